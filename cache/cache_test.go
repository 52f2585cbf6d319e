package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llmgate/llmgate/storage/storetest"
)

var ctx = context.Background()

func TestLocal(t *testing.T) {
	l := NewLocal()
	defer l.Close()
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	l.Set(ctx, "k", []byte("v"), time.Second)
	if v, ok := l.Get(ctx, "k"); !ok || string(v) != "v" {
		t.Fatal("miss")
	}
	now = now.Add(2 * time.Second)
	if _, ok := l.Get(ctx, "k"); ok {
		t.Fatal("expired value served")
	}
	for i := 1; i <= 3; i++ {
		if n, _ := l.Incr(ctx, "c", 2, time.Minute); n != int64(2*i) {
			t.Fatalf("incr %d", n)
		}
	}
	now = now.Add(time.Minute + time.Second)
	if n, _ := l.Incr(ctx, "c", 1, time.Minute); n != 1 {
		t.Fatalf("window did not restart: %d", n)
	}
	l.Set(ctx, "d", []byte("x"), time.Minute)
	l.Delete(ctx, "d")
	if _, ok := l.Get(ctx, "d"); ok {
		t.Fatal("deleted value served")
	}
}

func prefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "llmgate-test-" + hex.EncodeToString(b) + ":"
}

// A change made through one instance is seen by another at once, although
// the other serves reads from its client-side cache.
func TestRedisSharedWithInvalidation(t *testing.T) {
	addr, p := storetest.RedisAddr(t), prefix()
	a, err := NewRedis(RedisOptions{URL: addr, Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := NewRedis(RedisOptions{URL: addr, Prefix: p})
	defer b.Close()
	if !a.Shared() || !b.Shared() {
		t.Fatal("not connected")
	}
	a.Set(ctx, "key", []byte("one"), time.Minute)
	if v, ok := b.Get(ctx, "key"); !ok || string(v) != "one" {
		t.Fatalf("b sees %q %v", v, ok)
	}
	a.Set(ctx, "key", []byte("two"), time.Minute)
	deadline := time.Now().Add(time.Second)
	for {
		v, _ := b.Get(ctx, "key")
		if string(v) == "two" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b still serves %q a second after the change", v)
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.Delete(ctx, "key")
	deadline = time.Now().Add(time.Second)
	for {
		if _, ok := b.Get(ctx, "key"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deleted value still served by b")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Counters are shared and atomic.
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(c Cache) {
			defer wg.Done()
			if _, err := c.Incr(ctx, "ctr", 1, time.Minute); err != nil {
				t.Error(err)
			}
		}([]Cache{a, b}[i%2])
	}
	wg.Wait()
	if n, _ := a.Incr(ctx, "ctr", 0, time.Minute); n != 50 {
		t.Fatalf("counter %d", n)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Redis unreachable at start: the cache works from the fallback, then
// connects when Redis appears.
func TestRedisDownAtStartThenAppears(t *testing.T) {
	storetest.RedisAddr(t) // the Redis tests run only where Redis is installed
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	port := freePort(t)
	c, err := NewRedis(RedisOptions{URL: fmt.Sprintf("127.0.0.1:%d", port), Prefix: prefix()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Shared() {
		t.Fatal("shared with no Redis")
	}
	c.Set(ctx, "k", []byte("v"), time.Minute)
	if v, ok := c.Get(ctx, "k"); !ok || string(v) != "v" {
		t.Fatal("fallback does not serve")
	}
	if n, err := c.Incr(ctx, "n", 3, time.Minute); err != nil || n != 3 {
		t.Fatalf("fallback counter %d %v", n, err)
	}
	srv := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	deadline := time.Now().Add(5 * time.Second)
	for !c.Shared() {
		if time.Now().After(deadline) {
			t.Fatal("never connected after Redis appeared")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Set(ctx, "k2", []byte("shared"), time.Minute)
	if v, ok := c.Get(ctx, "k2"); !ok || string(v) != "shared" {
		t.Fatal("not serving from Redis")
	}
	// Redis goes away again: calls fall back, nothing fails.
	_ = srv.Process.Kill()
	_ = srv.Wait()
	if n, err := c.Incr(ctx, "n2", 1, time.Minute); err != nil || n != 1 {
		t.Fatalf("%d %v", n, err)
	}
	if c.Shared() {
		t.Fatal("still reports shared with Redis gone")
	}
}

func TestBadRedisURL(t *testing.T) {
	if _, err := NewRedis(RedisOptions{URL: "redis://:sekrit@host:notaport"}); err == nil {
		t.Fatal("accepted")
	} else if contains(err.Error(), "sekrit") {
		t.Fatal("password in error")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
