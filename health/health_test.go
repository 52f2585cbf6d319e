package health

import (
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func fail(d *Deployment, now time.Time) {
	if !d.Acquire(now) {
		panic("not acquirable")
	}
	d.Release(now, Outcome{Err: "boom"})
}

func TestBreakerOpensHalfOpensAndBacksOff(t *testing.T) {
	d := NewDeployment("p", "u", 1, Breaker{Failures: 3, Cooldown: time.Second, MaxCooldown: 3 * time.Second})
	for i := 0; i < 3; i++ {
		fail(d, t0)
	}
	if d.Available(t0) || d.Acquire(t0.Add(500*time.Millisecond)) {
		t.Fatal("breaker did not open after 3 consecutive failures")
	}
	if got := d.RetryIn(t0); got != time.Second {
		t.Fatalf("retry in %v", got)
	}
	// After the cooldown exactly one trial goes through.
	t1 := t0.Add(time.Second)
	if !d.Acquire(t1) {
		t.Fatal("no half-open trial")
	}
	if d.Acquire(t1) || d.Available(t1) {
		t.Fatal("second concurrent trial let through")
	}
	d.Release(t1, Outcome{Err: "still down"})
	// Failed trial doubles the cooldown.
	if d.Available(t1.Add(1900*time.Millisecond)) || !d.Available(t1.Add(2*time.Second)) {
		t.Fatal("cooldown did not double")
	}
	t2 := t1.Add(2 * time.Second)
	d.Acquire(t2)
	d.Release(t2, Outcome{Err: "x"})
	// capped at MaxCooldown (3s), not 4s
	if !d.Available(t2.Add(3 * time.Second)) {
		t.Fatal("cooldown not capped")
	}
	t3 := t2.Add(3 * time.Second)
	d.Acquire(t3)
	d.Release(t3, Outcome{OK: true, Latency: time.Millisecond})
	if s := d.Snapshot(t3); s.Breaker != "closed" || !s.Available {
		t.Fatalf("successful trial did not close: %+v", s)
	}
	// Cooldown reset to base after closing.
	for i := 0; i < 3; i++ {
		fail(d, t3)
	}
	if !d.Available(t3.Add(time.Second)) {
		t.Fatal("cooldown not reset after recovery")
	}
}

func TestRetryAfterOpensForThatLong(t *testing.T) {
	d := NewDeployment("p", "u", 1, Breaker{})
	d.Acquire(t0)
	d.Release(t0, Outcome{RetryAfter: 7 * time.Second, Err: "429"})
	if d.Available(t0.Add(6*time.Second)) || !d.Available(t0.Add(7*time.Second)) {
		t.Fatal("429 Retry-After not honoured")
	}
}

func TestErrorRateTrips(t *testing.T) {
	d := NewDeployment("p", "u", 1, Breaker{Failures: 100, ErrorRatePercent: 50, MinRequests: 10, Window: 10 * time.Second})
	for i := 0; i < 10; i++ {
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		d.Acquire(now)
		d.Release(now, Outcome{OK: i%2 == 0})
	}
	if d.Available(t0.Add(time.Second)) {
		t.Fatal("50% errors over 10 requests did not open the breaker")
	}
	// An old window does not count.
	d2 := NewDeployment("p", "u", 1, Breaker{Failures: 100, ErrorRatePercent: 50, MinRequests: 4, Window: time.Second})
	for i := 0; i < 3; i++ {
		fail(d2, t0)
	}
	fail(d2, t0.Add(5*time.Second))
	if !d2.Available(t0.Add(5 * time.Second)) {
		t.Fatal("failures outside the window counted")
	}
}

func TestOverride(t *testing.T) {
	d := NewDeployment("p", "u", 1, Breaker{Failures: 1})
	fail(d, t0)
	d.SetOverride(ForceUp)
	if !d.Acquire(t0) {
		t.Fatal("forced up refused")
	}
	d.Release(t0, Outcome{OK: true})
	d.SetOverride(ForceDown)
	if d.Available(t0) || d.Snapshot(t0).State != "down" {
		t.Fatal("forced down available")
	}
	if _, ok := ParseOverride("sideways"); ok {
		t.Fatal("bad override parsed")
	}
}

func TestPickPrefersFastAndIdle(t *testing.T) {
	fast := NewDeployment("p", "fast", 1, Breaker{})
	slow := NewDeployment("p", "slow", 1, Breaker{})
	down := NewDeployment("p", "down", 1, Breaker{})
	down.SetOverride(ForceDown)
	for _, d := range []*Deployment{fast, slow} {
		d.Acquire(t0)
	}
	fast.Release(t0, Outcome{OK: true, Latency: 10 * time.Millisecond})
	slow.Release(t0, Outcome{OK: true, Latency: 500 * time.Millisecond})
	none := func(*Deployment) bool { return false }
	counts := map[string]int{}
	for i := 0; i < 1000; i++ {
		counts[Pick([]*Deployment{slow, down, fast}, t0, none).ID]++
	}
	if counts["down"] != 0 || counts["fast"] != 1000 {
		t.Fatalf("picks %v", counts)
	}
	// Load shifts traffic: fast with 100 in flight scores worse than slow idle.
	fast.inflight.Add(100)
	if got := Pick([]*Deployment{slow, fast}, t0, none); got != slow {
		t.Fatalf("picked %s under load", got.ID)
	}
	if Pick([]*Deployment{fast}, t0, func(d *Deployment) bool { return d == fast }) != nil {
		t.Fatal("skipped deployment picked")
	}
}
