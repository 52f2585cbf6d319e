package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/health"
	"github.com/llmgate/llmgate/storage/storetest"
)

// instance provisions and starts an llm app as one gateway instance would.
func instance(t *testing.T, redisURL, prefix, upstream string) *App {
	t.Helper()
	app := &App{
		NoBuiltinCatalog: true,
		Storage:          &StorageConfig{Path: filepath.Join(t.TempDir(), "s.db")},
		Redis:            &RedisConfig{URL: redisURL, Prefix: prefix},
		Providers:        []*ProviderConfig{{ID: "p", BaseURL: upstream, Breaker: &BreakerConfig{Failures: 1, Cooldown: caddy.Duration(time.Minute)}}},
		Models:           []catalog.Model{{ID: "m", Serve: []catalog.Serve{{Provider: "p"}}}},
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

// Two instances on one Redis: an override and a breaker opening on one are
// seen by the other.
func TestHealthIsSharedThroughRedis(t *testing.T) {
	addr := storetest.RedisAddr(t)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	prefix := "llmgate-test-" + hex.EncodeToString(b) + ":"
	a1 := instance(t, addr, prefix, "http://127.0.0.1:9/v1")
	a2 := instance(t, addr, prefix, "http://127.0.0.1:9/v1")
	d1 := a1.providers["p"].deployments[0].Health
	d2 := a2.providers["p"].deployments[0].Health
	if d1 == d2 {
		// In one process both configs share health through the usage pool
		// already; simulate a second process with a private deployment.
		_ = a2.Stop()
		priv := health.NewDeployment("p", d1.ID, 1, health.Breaker{})
		a2.providers["p"].deployments[0] = &Deployment{Health: priv, base: "http://127.0.0.1:9/v1"}
		d2 = priv
		if err := a2.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if n := a1.SetOverride("p", "", health.ForceDown); n != 1 {
		t.Fatal(n)
	}
	waitFor(t, func() bool { return d2.Override() == health.ForceDown }, "override not shared")
	a1.SetOverride("p", "", health.Auto)
	waitFor(t, func() bool { return d2.Override() == health.Auto }, "override auto not shared")

	now := time.Now()
	d1.Acquire(now)
	d1.Release(now, health.Outcome{Err: "boom"}) // Failures: 1 → open for a minute
	if d1.OpenUntil().IsZero() {
		t.Fatal("local breaker did not open")
	}
	waitFor(t, func() bool { return !d2.Available(time.Now()) }, "open breaker not shared")
}

func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
