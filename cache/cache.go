// Package cache is llmgate's cache and counter layer: in-process by default,
// Redis through rueidis when configured. Redis is a cache and a counter,
// never the authority for money: when it is unreachable every call falls back
// to the in-process layer (one log line per outage, a metric), and when it
// returns, the shared layer is used again.
package cache

import (
	"context"
	"sync"
	"time"
)

// Cache holds short-lived copies of hot reads and shared counters.
type Cache interface {
	// Get returns a cached value.
	Get(ctx context.Context, key string) ([]byte, bool)
	// Set stores a value for ttl.
	Set(ctx context.Context, key string, val []byte, ttl time.Duration)
	// Delete removes keys here and, with Redis, from every instance's
	// client-side cache (server-assisted invalidation).
	Delete(ctx context.Context, keys ...string)
	// Incr adds n to a counter that lives for window from its first
	// increment, and returns the new value (fixed-window rate counting).
	Incr(ctx context.Context, key string, n int64, window time.Duration) (int64, error)
	// Shared reports whether values are shared with other instances right now.
	Shared() bool
	Close()
}

// Local is the in-process cache.
type Local struct {
	mu      sync.Mutex
	items   map[string]item
	now     func() time.Time
	stop    chan struct{}
	stopped sync.Once
}

type item struct {
	val     []byte
	n       int64
	expires time.Time
}

// NewLocal makes an in-process cache with a janitor that drops expired items.
func NewLocal() *Local {
	l := &Local{items: map[string]item{}, now: time.Now, stop: make(chan struct{})}
	go l.janitor()
	return l
}

func (l *Local) janitor() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			now := l.now()
			l.mu.Lock()
			for k, it := range l.items {
				if now.After(it.expires) {
					delete(l.items, k)
				}
			}
			l.mu.Unlock()
		}
	}
}

func (l *Local) Get(_ context.Context, key string) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	it, ok := l.items[key]
	if !ok || l.now().After(it.expires) || it.val == nil {
		return nil, false
	}
	return it.val, true
}

func (l *Local) Set(_ context.Context, key string, val []byte, ttl time.Duration) {
	if val == nil {
		val = []byte{}
	}
	l.mu.Lock()
	l.items[key] = item{val: val, expires: l.now().Add(ttl)}
	l.mu.Unlock()
}

func (l *Local) Delete(_ context.Context, keys ...string) {
	l.mu.Lock()
	for _, k := range keys {
		delete(l.items, k)
	}
	l.mu.Unlock()
}

func (l *Local) Incr(_ context.Context, key string, n int64, window time.Duration) (int64, error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	it, ok := l.items[key]
	if !ok || now.After(it.expires) {
		it = item{expires: now.Add(window)}
	}
	it.n += n
	l.items[key] = it
	return it.n, nil
}

func (l *Local) Shared() bool { return false }

func (l *Local) Close() { l.stopped.Do(func() { close(l.stop) }) }
