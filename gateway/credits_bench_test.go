package gateway

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/credits"
	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/storetest"
)

// BenchmarkAdmitSettle is the credit path of one request (tier check, rate
// counters, allowance check, hold, settlement with usage record) at 64
// concurrent requests, on SQLite and on PostgreSQL with Redis.
// go test ./gateway -run X -bench AdmitSettle (with the test services).
func BenchmarkAdmitSettle(b *testing.B) {
	tier := credits.Tier{Name: "t", RPM: 1 << 40, TPM: 1 << 50, Concurrency: 1 << 20, AllowanceMicros: 1}
	b.Run("sqlite", func(b *testing.B) {
		benchAdmit(b, &App{Storage: &StorageConfig{Path: filepath.Join(b.TempDir(), "b.db")}}, tier)
	})
	b.Run("postgres+redis", func(b *testing.B) {
		dsn, redis := storetest.PostgresURL(b), storetest.RedisAddr(b)
		schema := "llmgate_bench_" + randHex()
		b.Cleanup(func() {
			if c, err := pgx.Connect(context.Background(), dsn); err == nil {
				_, _ = c.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
				_ = c.Close(context.Background())
			}
		})
		benchAdmit(b, &App{Storage: &StorageConfig{Backend: "postgres", DSN: dsn, Schema: schema, MaxConns: 32},
			Redis: &RedisConfig{URL: redis, Prefix: "llmgate-bench-" + randHex() + ":"}}, tier)
	})
}

func benchAdmit(b *testing.B, app *App, tier credits.Tier) {
	app.NoBuiltinCatalog, app.NoDefaultTiers, app.DefaultTier, app.Tiers = true, true, tier.Name, []credits.Tier{tier}
	app.Providers = []*ProviderConfig{{ID: "p", BaseURL: "http://127.0.0.1:9/v1"}}
	app.Models = []catalog.Model{{ID: "m", Serve: []catalog.Serve{{Provider: "p"}}, InputMicrosPerMTok: 1, OutputMicrosPerMTok: 1_000_000}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := app.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	if err := app.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = app.Stop(); _ = app.Cleanup() }()
	const users = 64
	for i := 0; i < users; i++ {
		if _, _, err := app.store.AddCredits(context.Background(), storage.LedgerEntry{User: fmt.Sprint("u", i), AmountMicros: 1 << 50, Kind: storage.KindPurchase, Key: fmt.Sprint("s", i)}); err != nil {
			b.Fatal(err)
		}
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.RunParallel(func(pb *testing.PB) {
		bg := context.Background()
		for pb.Next() {
			x := routed(app, fmt.Sprint("u", seq.Add(1)%users), 50)
			adm, e := app.Admit(bg, x)
			if e != nil {
				b.Fatal(e)
			}
			if _, err := app.Settle(bg, adm, x, true, credits.Usage{In: 20, Out: 50, Reported: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
