package cache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"
)

// incrScript adds to a counter and starts its window on the first increment,
// atomically.
var incrScript = rueidis.NewLuaScript(`
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if v == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v`)

// RedisOptions configure the shared cache.
type RedisOptions struct {
	// URL is redis://[user:pass@]host:port[/db] or host:port.
	URL string
	// Prefix goes before every key (default "llmgate:").
	Prefix string
	// ClientTTL bounds how long a value stays in the client-side cache
	// (default 30s); invalidation normally removes it sooner.
	ClientTTL time.Duration
	Logger    *zap.Logger
	// OnError is called for each failed Redis call (a metric hook).
	OnError func()
}

// Redis is the shared cache. While Redis is unreachable it serves from an
// in-process fallback and reconnects in the background.
type Redis struct {
	opt      rueidis.ClientOption
	o        RedisOptions
	local    *Local
	client   atomic.Pointer[rueidis.Client]
	down     atomic.Bool
	lastTry  atomic.Int64 // unix nanos of the last try while down
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	redacted string
}

// ParseRedisURL checks a Redis address without connecting; its errors never
// repeat a password.
func ParseRedisURL(s string) (rueidis.ClientOption, error) {
	if !strings.Contains(s, "://") {
		s = "redis://" + s
	}
	opt, err := rueidis.ParseURL(s)
	if err != nil {
		return opt, fmt.Errorf("redis: the URL does not parse (want redis://host:port/db)")
	}
	return opt, nil
}

// NewRedis makes the shared cache. It never fails for an unreachable Redis:
// it starts on the fallback and connects when Redis answers.
func NewRedis(o RedisOptions) (*Redis, error) {
	opt, err := ParseRedisURL(o.URL)
	if err != nil {
		return nil, err
	}
	if o.Prefix == "" {
		o.Prefix = "llmgate:"
	}
	if o.ClientTTL <= 0 {
		o.ClientTTL = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	opt.Dialer.Timeout = 2 * time.Second
	opt.ConnWriteTimeout = 2 * time.Second
	opt.DisableRetry = true
	r := &Redis{opt: opt, o: o, local: NewLocal(), redacted: strings.Join(opt.InitAddress, ",")}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if err := r.connect(); err != nil {
		r.markDown(err)
		r.wg.Add(1)
		go r.reconnect()
	}
	return r, nil
}

func (r *Redis) connect() error {
	c, err := rueidis.NewClient(r.opt)
	if err != nil {
		return err
	}
	r.client.Store(&c)
	r.down.Store(false)
	r.o.Logger.Info("redis cache connected", zap.String("addr", r.redacted))
	return nil
}

// reconnect retries until connected or closed.
func (r *Redis) reconnect() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(time.Second):
		}
		if r.connect() == nil {
			return
		}
	}
}

func (r *Redis) markDown(err error) {
	if r.o.OnError != nil {
		r.o.OnError()
	}
	r.lastTry.Store(time.Now().UnixNano())
	if r.down.CompareAndSwap(false, true) {
		r.o.Logger.Warn("redis cache unavailable; serving from the in-process cache and the store",
			zap.String("addr", r.redacted), zap.String("error", describe(err)))
	}
}

func (r *Redis) markUp() {
	if r.down.CompareAndSwap(true, false) {
		r.o.Logger.Info("redis cache available again", zap.String("addr", r.redacted))
	}
}

func describe(err error) string {
	var re *rueidis.RedisError
	if errors.As(err, &re) {
		return "redis error"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "connection failed"
}

// c returns the client to use now, or nil to use the fallback. While Redis
// is down, only one call a second tries it, so an unreachable Redis costs
// the request path nothing.
func (r *Redis) c() rueidis.Client {
	p := r.client.Load()
	if p == nil {
		return nil
	}
	if r.down.Load() {
		now := time.Now().UnixNano()
		last := r.lastTry.Load()
		if now-last < int64(time.Second) || !r.lastTry.CompareAndSwap(last, now) {
			return nil
		}
	}
	return *p
}

func (r *Redis) Get(ctx context.Context, key string) ([]byte, bool) {
	c := r.c()
	if c == nil {
		return r.local.Get(ctx, key)
	}
	b, err := c.DoCache(ctx, c.B().Get().Key(r.o.Prefix+key).Cache(), r.o.ClientTTL).AsBytes()
	if rueidis.IsRedisNil(err) {
		r.markUp()
		return nil, false
	}
	if err != nil {
		r.markDown(err)
		return r.local.Get(ctx, key)
	}
	r.markUp()
	return b, true
}

func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) {
	// The fallback keeps a copy for at most a second, so a Redis outage
	// never makes an instance serve a value another instance invalidated
	// (a revoked key) for longer than that.
	r.local.Set(ctx, key, val, min(ttl, time.Second))
	c := r.c()
	if c == nil {
		return
	}
	err := c.Do(ctx, c.B().Set().Key(r.o.Prefix+key).Value(rueidis.BinaryString(val)).Px(ttl).Build()).Error()
	if err != nil {
		r.markDown(err)
		return
	}
	r.markUp()
}

func (r *Redis) Delete(ctx context.Context, keys ...string) {
	r.local.Delete(ctx, keys...)
	c := r.c()
	if c == nil || len(keys) == 0 {
		return
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.o.Prefix + k
	}
	if err := c.Do(ctx, c.B().Del().Key(full...).Build()).Error(); err != nil {
		r.markDown(err)
		return
	}
	r.markUp()
}

func (r *Redis) Incr(ctx context.Context, key string, n int64, window time.Duration) (int64, error) {
	c := r.c()
	if c == nil {
		return r.local.Incr(ctx, key, n, window)
	}
	v, err := incrScript.Exec(ctx, c, []string{r.o.Prefix + key}, []string{fmt.Sprint(n), fmt.Sprint(window.Milliseconds())}).AsInt64()
	if err != nil {
		r.markDown(err)
		return r.local.Incr(ctx, key, n, window)
	}
	r.markUp()
	return v, nil
}

// Shared reports whether Redis is answering.
func (r *Redis) Shared() bool { return r.client.Load() != nil && !r.down.Load() }

func (r *Redis) Close() {
	r.cancel()
	r.wg.Wait()
	if c := r.c(); c != nil {
		c.Close()
	}
	r.local.Close()
}

var (
	_ Cache = (*Local)(nil)
	_ Cache = (*Redis)(nil)
)
