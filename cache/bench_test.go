package cache

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/storage/storetest"
)

// BenchmarkCachedLookup is an API-key (or balance) lookup served by the
// cache at 64 goroutines: from Redis's client-side cache, and in-process.
// Run with: go test ./cache -run X -bench . (LLM_TEST_REDIS_ADDR for Redis).
func BenchmarkCachedLookup(b *testing.B) {
	b.Run("redis-client-side", func(b *testing.B) {
		r, err := NewRedis(RedisOptions{URL: storetest.RedisAddr(b), Prefix: prefix()})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		benchGet(b, r)
	})
	b.Run("local", func(b *testing.B) {
		l := NewLocal()
		defer l.Close()
		benchGet(b, l)
	})
}

func benchGet(b *testing.B, c Cache) {
	val := []byte(`{"id":"k1","owner":"u","scopes":"chat"}`)
	for i := 0; i < 1000; i++ {
		c.Set(ctx, fmt.Sprint("apikey:", i), val, time.Minute)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := c.Get(ctx, fmt.Sprint("apikey:", seq.Add(1)%1000)); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkIncr is a rate-limit counter increment at 64 goroutines.
func BenchmarkIncr(b *testing.B) {
	r, err := NewRedis(RedisOptions{URL: storetest.RedisAddr(b), Prefix: prefix()})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := r.Incr(ctx, "rpm:u", 1, time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
