package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/credits"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/reqview"
	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/storetest"
)

func randHex() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sharedInstance is one gateway instance on a shared PostgreSQL schema and
// Redis prefix, as a second Caddy process would be.
func sharedInstance(t *testing.T, dsn, schema, redis, prefix string, tier credits.Tier) *App {
	t.Helper()
	app := &App{
		NoBuiltinCatalog: true, NoDefaultTiers: true, DefaultTier: tier.Name, Tiers: []credits.Tier{tier},
		Storage:   &StorageConfig{Backend: "postgres", DSN: dsn, Schema: schema},
		Redis:     &RedisConfig{URL: redis, Prefix: prefix},
		Providers: []*ProviderConfig{{ID: "p", BaseURL: "http://127.0.0.1:9/v1"}},
		Models:    []catalog.Model{{ID: "m", Serve: []catalog.Serve{{Provider: "p"}}, OutputMicrosPerMTok: 1_000_000}},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := app.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Stop(); _ = app.Cleanup(); cancel() })
	return app
}

func twoInstances(t *testing.T, tier credits.Tier) (*App, *App) {
	dsn, redis := storetest.PostgresURL(t), storetest.RedisAddr(t)
	schema, prefix := "llmgate_two_"+randHex(), "llmgate-two-"+randHex()+":"
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), dsn); err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			_ = c.Close(context.Background())
		}
	})
	a := sharedInstance(t, dsn, schema, redis, prefix, tier)
	// The process pools stores and clients by DSN and URL; spell them
	// differently so the second instance has a pool and a Redis client of
	// its own, as a second process would.
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	b := sharedInstance(t, dsn+sep+"application_name=llmgate-second", schema, "redis://"+strings.TrimPrefix(redis, "redis://"), prefix, tier)
	if a.store == b.store || a.cache == b.cache {
		t.Fatal("the two instances share a pool or a cache client")
	}
	return a, b
}

func routed(app *App, user string, maxTokens int64) *exchange.Exchange {
	x := &exchange.Exchange{Start: time.Now(), Identity: &exchange.Identity{User: user},
		Body: []byte(`{"model":"m","messages":[]}`), View: reqview.View{Endpoint: reqview.Chat, Model: "m", MaxTokens: maxTokens, N: 1}}
	x.Route, _ = app.RouteExplicit(x.View)
	x.Provider = "p"
	return x
}

// 200 requests split over two instances against a balance for 100.
func TestTwoInstancesNeverOverspend(t *testing.T) {
	a, b := twoInstances(t, credits.Tier{Name: "t"})
	ctx := context.Background()
	if _, _, err := a.store.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 1000, Kind: storage.KindPurchase, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(app *App) {
			defer wg.Done()
			x := routed(app, "u", 10)
			adm, e := app.Admit(ctx, x)
			if e != nil {
				if e.Status == http.StatusPaymentRequired {
					refused.Add(1)
				} else {
					t.Error(e)
				}
				return
			}
			ok.Add(1)
			if _, err := app.Settle(ctx, adm, x, true, credits.Usage{In: 3, Out: 10, Reported: true}); err != nil {
				t.Error(err)
			}
		}([]*App{a, b}[i%2])
	}
	wg.Wait()
	bal, _ := b.store.GetBalance(ctx, "u")
	if ok.Load() != 100 || refused.Load() != 100 || bal.BalanceMicros != 0 || bal.HeldMicros != 0 {
		t.Fatalf("served %d refused %d balance %+v", ok.Load(), refused.Load(), bal)
	}
}

// Rate limits are shared: rpm 5 over two instances lets 5 through in a minute.
func TestRateLimitsAcrossInstances(t *testing.T) {
	a, b := twoInstances(t, credits.Tier{Name: "t", RPM: 5})
	ctx := context.Background()
	if _, _, err := a.store.AddCredits(ctx, storage.LedgerEntry{User: "r", AmountMicros: 1_000_000, Kind: storage.KindPurchase, Key: "seed"}); err != nil {
		t.Fatal(err)
	}
	passed, limited := 0, 0
	for i := 0; i < 10; i++ {
		app := []*App{a, b}[i%2]
		x := routed(app, "r", 1)
		adm, e := app.Admit(ctx, x)
		switch {
		case e == nil:
			passed++
			_, _ = app.Settle(ctx, adm, x, true, credits.Usage{Out: 1, Reported: true})
		case e.Status == http.StatusTooManyRequests:
			limited++
		default:
			t.Fatal(e)
		}
	}
	// A minute boundary inside the loop would give a fresh window; allow it.
	if passed < 5 || passed > 6 || limited+passed != 10 {
		t.Fatalf("passed %d, limited %d", passed, limited)
	}
	_ = errors.New
}
