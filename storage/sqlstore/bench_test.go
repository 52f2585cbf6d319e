package sqlstore

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/storage"
)

// Run with: go test ./storage/sqlstore -run X -bench . (LLM_TEST_POSTGRES_URL for PostgreSQL).
func BenchmarkReserveSettle(b *testing.B) {
	for _, be := range []struct {
		name string
		open func(testing.TB) *Store
	}{{"sqlite", openSQLite}, {"postgres", openPostgres}} {
		b.Run(be.name+"/serial", func(b *testing.B) { benchReserveSettle(b, be.open(b), 1) })
		b.Run(be.name+"/64", func(b *testing.B) { benchReserveSettle(b, be.open(b), 64) })
	}
}

func benchReserveSettle(b *testing.B, s *Store, conc int) {
	ctx := context.Background()
	users := 64
	for u := 0; u < users; u++ {
		if _, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: fmt.Sprint("u", u), AmountMicros: 1 << 50, Kind: storage.KindPurchase, Key: fmt.Sprint("seed", u)}); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	one := func() {
		n := seq.Add(1)
		id, user := fmt.Sprint("r", n), fmt.Sprint("u", n%int64(users))
		if err := s.Reserve(ctx, storage.Hold{ID: id, User: user, AmountMicros: 1000, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			b.Fatal(err)
		}
		if _, _, err := s.Settle(ctx, storage.Settlement{HoldID: id, User: user, CostMicros: 700, Usage: storage.Usage{Model: "m", Provider: "p", TokensIn: 10, TokensOut: 20}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	if conc == 1 {
		for b.Loop() {
			one()
		}
	} else {
		b.SetParallelism(max(1, conc/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				one()
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkAPIKeyLookup(b *testing.B) {
	for _, be := range []struct {
		name string
		open func(testing.TB) *Store
	}{{"sqlite", openSQLite}, {"postgres", openPostgres}} {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b)
			ctx := context.Background()
			for i := 0; i < 1000; i++ {
				if err := s.CreateAPIKey(ctx, storage.APIKey{ID: fmt.Sprint("k", i), Hash: fmt.Sprintf("%064d", i), Owner: "u"}); err != nil {
					b.Fatal(err)
				}
			}
			var seq atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.GetAPIKeyByHash(ctx, fmt.Sprintf("%064d", seq.Add(1)%1000)); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
