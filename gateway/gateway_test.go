package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/fakeprovider"
	"github.com/llmgate/llmgate/reqview"
)

func TestSafeURLDropsSecrets(t *testing.T) {
	got := SafeURL("https://user:pass@api.example.com/v1/?key=sk-secret#frag")
	if got != "https://api.example.com/v1" {
		t.Fatal(got)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{
		"": 0, "7": 7 * time.Second, "junk": 0, "-3": 0, "999999": time.Hour,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
	}
	for in, want := range cases {
		if got := retryAfter(in, now); got != want {
			t.Errorf("%q: %v want %v", in, got, want)
		}
	}
}

func provisioned(tb testing.TB, upstreamURL string) *App {
	tb.Helper()
	key := "sk-bench"
	app := &App{
		NoBuiltinCatalog: true,
		Providers:        []*ProviderConfig{{ID: "p", BaseURL: upstreamURL, APIKey: &key}},
		Models:           []catalog.Model{{ID: "m", Aliases: []string{"alias"}, Serve: []catalog.Serve{{Provider: "p", Upstream: "up-m"}}}},
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	if err := app.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = app.Cleanup() })
	return app
}

var benchBody = []byte(`{"model":"alias","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in five words."}],"max_tokens":64}`)

// BenchmarkChain is the gateway's hot path for one non-streamed chat
// request: parse and validate the body, route, rewrite the model, proxy to a
// loopback provider, copy the answer. Compare with BenchmarkBareProxy (the
// same upstream call with nothing else) for the gateway's own cost.
func BenchmarkChain(b *testing.B) {
	srv := httptest.NewServer(fakeprovider.New(fakeprovider.Config{}))
	defer srv.Close()
	app := provisioned(b, srv.URL+"/v1")
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		v, e := reqview.Parse(reqview.Chat, benchBody)
		if e != nil {
			b.Fatal(e)
		}
		route, e := app.RouteExplicit(v)
		if e != nil {
			b.Fatal(e)
		}
		x := &exchange.Exchange{Body: benchBody, View: v, Route: route}
		w := &discardWriter{h: http.Header{}}
		if err := app.Proxy(w, req, x); err != nil || w.status != 200 {
			b.Fatal(err, w.status)
		}
	}
}

// BenchmarkBareProxy sends the same request with a plain http.Transport and
// copies the answer: the floor BenchmarkChain is measured against.
func BenchmarkBareProxy(b *testing.B) {
	srv := httptest.NewServer(fakeprovider.New(fakeprovider.Config{}))
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/chat/completions", strings.NewReader(string(benchBody)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		w := &discardWriter{h: http.Header{}}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkParseAndRoute is the part of the chain that runs before any I/O.
func BenchmarkParseAndRoute(b *testing.B) {
	app := provisioned(b, "http://127.0.0.1:1/v1")
	b.ReportAllocs()
	for b.Loop() {
		v, e := reqview.Parse(reqview.Chat, benchBody)
		if e != nil {
			b.Fatal(e)
		}
		if _, e := app.RouteExplicit(v); e != nil {
			b.Fatal(e)
		}
	}
}

type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }
func (w *discardWriter) Flush()                      {}
