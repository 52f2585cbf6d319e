// Package health keeps the passive and active health of every upstream
// deployment: EWMA latency and time to first byte, in-flight count, recent
// error rate, and a circuit breaker with backed-off half-open trials. It also
// picks among deployments, favouring fast and idle ones (power of two choices).
package health

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// State of a deployment's circuit breaker.
type State int32

const (
	Closed State = iota
	Open
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return "closed"
}

// Override is an operator's manual state for a deployment.
type Override int32

const (
	Auto Override = iota
	ForceUp
	ForceDown
)

func (o Override) String() string {
	switch o {
	case ForceUp:
		return "up"
	case ForceDown:
		return "down"
	}
	return "auto"
}

// ParseOverride reads "up", "down" or "auto".
func ParseOverride(s string) (Override, bool) {
	switch s {
	case "up":
		return ForceUp, true
	case "down":
		return ForceDown, true
	case "auto":
		return Auto, true
	}
	return Auto, false
}

// Breaker configures when a deployment is taken out of rotation.
type Breaker struct {
	// Open after this many consecutive failures.
	Failures int
	// Or when, over Window with at least MinRequests outcomes, the share of
	// failures reaches ErrorRatePercent.
	ErrorRatePercent int
	MinRequests      int
	Window           time.Duration
	// Cooldown before the first half-open trial; doubles on each failed
	// trial up to MaxCooldown.
	Cooldown    time.Duration
	MaxCooldown time.Duration
}

// WithDefaults fills zero fields.
func (b Breaker) WithDefaults() Breaker {
	if b.Failures <= 0 {
		b.Failures = 5
	}
	if b.ErrorRatePercent <= 0 {
		b.ErrorRatePercent = 50
	}
	if b.MinRequests <= 0 {
		b.MinRequests = 20
	}
	if b.Window <= 0 {
		b.Window = 30 * time.Second
	}
	if b.Cooldown <= 0 {
		b.Cooldown = 5 * time.Second
	}
	if b.MaxCooldown <= 0 {
		b.MaxCooldown = 2 * time.Minute
	}
	if b.MaxCooldown < b.Cooldown {
		b.MaxCooldown = b.Cooldown
	}
	return b
}

const buckets = 10

type bucket struct {
	start     int64 // unix nanos of the bucket's slot
	ok, fails int
}

// Deployment is the live health of one upstream URL of one provider.
type Deployment struct {
	Provider string
	ID       string
	Weight   int

	inflight atomic.Int64
	override atomic.Int32

	mu          sync.Mutex
	cfg         Breaker
	state       State
	openUntil   time.Time
	cooldown    time.Duration
	trialBusy   bool
	consecFails int
	win         [buckets]bucket
	ewmaLat     float64 // nanoseconds; 0 = no sample yet
	ewmaTTFB    float64
	lastErr     string
	lastChange  time.Time
	lastProbe   time.Time
	lastProbeOK bool
	requests    int64
	failures    int64
}

// NewDeployment makes a deployment in the closed state.
func NewDeployment(provider, id string, weight int, b Breaker) *Deployment {
	if weight <= 0 {
		weight = 1
	}
	b = b.WithDefaults()
	return &Deployment{Provider: provider, ID: id, Weight: weight, cfg: b, cooldown: b.Cooldown}
}

// Configure replaces the breaker settings (on config reload), keeping state.
func (d *Deployment) Configure(weight int, b Breaker) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if weight <= 0 {
		weight = 1
	}
	d.Weight = weight
	d.cfg = b.WithDefaults()
	if d.cooldown < d.cfg.Cooldown || d.cooldown > d.cfg.MaxCooldown {
		d.cooldown = d.cfg.Cooldown
	}
}

// SetOverride sets the operator's manual state.
func (d *Deployment) SetOverride(o Override) { d.override.Store(int32(o)) }

// Available reports whether a request may be sent now (without taking a
// half-open trial slot; Acquire does that).
func (d *Deployment) Available(now time.Time) bool {
	switch Override(d.override.Load()) {
	case ForceUp:
		return true
	case ForceDown:
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.state {
	case Closed:
		return true
	case Open:
		return !now.Before(d.openUntil)
	default:
		return !d.trialBusy
	}
}

// Acquire takes the deployment for one request. In half-open state only one
// trial request is let through at a time. The caller must call Release.
func (d *Deployment) Acquire(now time.Time) bool {
	switch Override(d.override.Load()) {
	case ForceUp:
		d.inflight.Add(1)
		return true
	case ForceDown:
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == Open && !now.Before(d.openUntil) {
		d.setState(HalfOpen, now)
	}
	switch d.state {
	case Open:
		return false
	case HalfOpen:
		if d.trialBusy {
			return false
		}
		d.trialBusy = true
	}
	d.inflight.Add(1)
	return true
}

// Outcome is what happened to one request.
type Outcome struct {
	OK bool
	// Latency is the whole request's duration; TTFB the time to response headers.
	Latency, TTFB time.Duration
	// RetryAfter, when positive, opens the breaker for that long (a 429).
	RetryAfter time.Duration
	Err        string
}

const alpha = 0.3

// Release records the outcome of a request taken with Acquire.
func (d *Deployment) Release(now time.Time, o Outcome) {
	d.inflight.Add(-1)
	d.record(now, o, true)
}

// RecordProbe records an active health probe. A probe never takes a trial
// slot; a successful probe closes a breaker whose cooldown has passed, a
// failed one opens it.
func (d *Deployment) RecordProbe(now time.Time, o Outcome) {
	d.mu.Lock()
	d.lastProbe, d.lastProbeOK = now, o.OK
	d.mu.Unlock()
	d.record(now, o, false)
}

func (d *Deployment) record(now time.Time, o Outcome, trial bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requests++
	if o.Latency > 0 && o.OK {
		d.ewmaLat = ewma(d.ewmaLat, float64(o.Latency))
	}
	if o.TTFB > 0 && o.OK {
		d.ewmaTTFB = ewma(d.ewmaTTFB, float64(o.TTFB))
	}
	b := d.slot(now)
	wasTrial := trial && d.state == HalfOpen && d.trialBusy
	if wasTrial {
		d.trialBusy = false
	}
	if o.OK {
		b.ok++
		d.consecFails = 0
		if wasTrial || (d.state != Closed && !now.Before(d.openUntil)) {
			d.cooldown = d.cfg.Cooldown
			d.setState(Closed, now)
		}
		return
	}
	b.fails++
	d.failures++
	d.consecFails++
	d.lastErr = o.Err
	switch {
	case o.RetryAfter > 0:
		d.open(now, o.RetryAfter)
	case wasTrial:
		d.cooldown = min(d.cooldown*2, d.cfg.MaxCooldown)
		d.open(now, d.cooldown)
	case d.state == Closed && (d.consecFails >= d.cfg.Failures || d.rateTripped(now)):
		d.open(now, d.cooldown)
	case d.state != Closed && !now.Before(d.openUntil):
		// A failed probe after the cooldown: stay out a while longer.
		d.open(now, d.cooldown)
	}
}

func (d *Deployment) open(now time.Time, dur time.Duration) {
	until := now.Add(dur)
	if d.state == Open && until.Before(d.openUntil) {
		return
	}
	d.openUntil = until
	d.setState(Open, now)
}

func (d *Deployment) setState(s State, now time.Time) {
	if d.state != s {
		d.state = s
		d.lastChange = now
	}
}

func ewma(prev, x float64) float64 {
	if prev == 0 {
		return x
	}
	return prev + alpha*(x-prev)
}

func (d *Deployment) slot(now time.Time) *bucket {
	width := int64(d.cfg.Window) / buckets
	if width <= 0 {
		width = 1
	}
	start := now.UnixNano() / width * width
	b := &d.win[(start/width)%buckets]
	if b.start != start {
		*b = bucket{start: start}
	}
	return b
}

func (d *Deployment) rateTripped(now time.Time) bool {
	oldest := now.UnixNano() - int64(d.cfg.Window)
	ok, fails := 0, 0
	for _, b := range d.win {
		if b.start > oldest {
			ok += b.ok
			fails += b.fails
		}
	}
	total := ok + fails
	return total >= d.cfg.MinRequests && fails*100 >= d.cfg.ErrorRatePercent*total
}

// RetryIn is how long until the deployment may take traffic again (0 if now).
func (d *Deployment) RetryIn(now time.Time) time.Duration {
	if Override(d.override.Load()) == ForceDown {
		return d.cfg.Cooldown
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == Open && now.Before(d.openUntil) {
		return d.openUntil.Sub(now)
	}
	return 0
}

// score ranks deployments for the pick: expected latency times queue depth.
// A deployment with no latency sample yet scores as fast, so it gets tried.
func (d *Deployment) score() float64 {
	d.mu.Lock()
	lat := d.ewmaLat
	d.mu.Unlock()
	if lat == 0 {
		lat = 1
	}
	return lat * float64(d.inflight.Load()+1) / float64(d.Weight)
}

// Snapshot is a point-in-time view for /providers/health and metrics.
type Snapshot struct {
	Provider       string    `json:"provider"`
	Deployment     string    `json:"deployment"`
	State          string    `json:"state"`
	Breaker        string    `json:"breaker"`
	Override       string    `json:"override"`
	Available      bool      `json:"available"`
	InFlight       int64     `json:"in_flight"`
	EWMALatencyMS  float64   `json:"ewma_latency_ms"`
	EWMATTFBMS     float64   `json:"ewma_ttfb_ms"`
	ErrorRate      float64   `json:"error_rate"`
	ConsecFailures int       `json:"consecutive_failures"`
	Requests       int64     `json:"requests"`
	Failures       int64     `json:"failures"`
	OpenUntil      time.Time `json:"open_until,omitzero"`
	LastChange     time.Time `json:"last_change,omitzero"`
	LastProbe      time.Time `json:"last_probe,omitzero"`
	LastProbeOK    bool      `json:"last_probe_ok"`
	LastError      string    `json:"last_error,omitempty"`
}

// Snapshot reads the deployment's health.
func (d *Deployment) Snapshot(now time.Time) Snapshot {
	avail := d.Available(now)
	ov := Override(d.override.Load())
	d.mu.Lock()
	defer d.mu.Unlock()
	oldest := now.UnixNano() - int64(d.cfg.Window)
	ok, fails := 0, 0
	for _, b := range d.win {
		if b.start > oldest {
			ok += b.ok
			fails += b.fails
		}
	}
	s := Snapshot{
		Provider: d.Provider, Deployment: d.ID, Breaker: d.state.String(), Override: ov.String(),
		Available: avail, InFlight: d.inflight.Load(),
		EWMALatencyMS: d.ewmaLat / 1e6, EWMATTFBMS: d.ewmaTTFB / 1e6,
		ConsecFailures: d.consecFails, Requests: d.requests, Failures: d.failures,
		LastChange: d.lastChange, LastProbe: d.lastProbe, LastProbeOK: d.lastProbeOK, LastError: d.lastErr,
	}
	if ok+fails > 0 {
		s.ErrorRate = float64(fails) / float64(ok+fails)
	}
	if d.state == Open {
		s.OpenUntil = d.openUntil
	}
	switch {
	case !avail:
		s.State = "down"
	case d.state != Closed || s.ErrorRate > 0:
		s.State = "degraded"
	default:
		s.State = "up"
	}
	return s
}

// Pick chooses one of ds that is available now, by power of two choices on
// score; ds must be non-empty to return a value. skip tells which were
// already tried.
func Pick(ds []*Deployment, now time.Time, skip func(*Deployment) bool) *Deployment {
	var a, b *Deployment
	n := 0
	var totalW int
	for _, d := range ds {
		if skip(d) || !d.Available(now) {
			continue
		}
		n++
		totalW += d.Weight
		// Weighted reservoir sampling of two distinct deployments.
		if a == nil {
			a = d
			continue
		}
		if rand.IntN(totalW) < d.Weight {
			a, b = d, a
		} else if b == nil || rand.IntN(totalW) < d.Weight {
			b = d
		}
	}
	if n <= 1 || b == nil {
		return a
	}
	if b.score() < a.score() {
		return b
	}
	return a
}

// OpenUntil is when an open breaker lets a trial through again; zero when the
// breaker is not open.
func (d *Deployment) OpenUntil() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != Open {
		return time.Time{}
	}
	return d.openUntil
}

// AdoptOpen opens the breaker until the given time because another instance
// saw the deployment fail (shared health). It never shortens a local opening.
func (d *Deployment) AdoptOpen(now, until time.Time) {
	if !until.After(now) {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == HalfOpen && d.trialBusy {
		return // a trial is deciding locally
	}
	d.open(now, until.Sub(now))
}

// EWMALatency is the smoothed latency of successful requests (0 before any).
func (d *Deployment) EWMALatency() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Duration(d.ewmaLat)
}

// Override returns the operator's manual state.
func (d *Deployment) Override() Override { return Override(d.override.Load()) }
