package caddymodule_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/jackc/pgx/v5"

	"github.com/llmgate/llmgate/fakeprovider"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/storage/storetest"
)

// gate is a TCP proxy to a real server that the test opens and closes, to
// make a database unreachable and reachable again.
type gate struct {
	ln     net.Listener
	target string
	open   atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newGate(t *testing.T, target string) *gate {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); g.setOpen(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !g.open.Load() {
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns = append(g.conns, c, up)
			g.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return g
}

func (g *gate) setOpen(v bool) {
	g.open.Store(v)
	if !v {
		g.mu.Lock()
		for _, c := range g.conns {
			c.Close()
		}
		g.conns = nil
		g.mu.Unlock()
	}
}

func randName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func dropSchema(t *testing.T, dsn, schema string) {
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), dsn); err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			_ = c.Close(context.Background())
		}
	})
}

func pgConfig(fakeURL, dsn, schema string) string {
	return fmt.Sprintf(`{
	llm {
		storage postgres "%s" {
			schema %s
			statement_timeout 2s
		}
		no_builtin_catalog
		provider p {
			base_url %s
		}
		model m {
			serve p
		}
	}
}
http://127.0.0.1:{PORT} {
	handle /other {
		respond "other site ok"
	}
	handle_path /v1/* {
		llm_router {
			allow_unauthenticated
		}
		llm_upstream
	}
}`, dsn, schema, fakeURL)
}

// The database is down when Caddy starts: Caddy starts anyway, other routes
// serve, the LLM routes answer 503 with Retry-After without calling a
// provider, and all recovers by itself when the database answers.
func TestDatabaseDownAtStartRecovers(t *testing.T) {
	dsn := storetest.PostgresURL(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	gt := newGate(t, u.Host)
	u.Host = gt.ln.Addr().String()
	q := u.Query()
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	schema := randName("llmgate_e2e_")
	dropSchema(t, dsn, schema)
	fp, fURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, pgConfig(fURL, u.String(), schema))

	if resp, body := g.get(t, "/other"); resp.StatusCode != 200 || body != "other site ok" {
		t.Fatalf("other route: %d %s", resp.StatusCode, body)
	}
	chat := `{"model":"m","messages":[{"role":"user","content":"x"}]}`
	resp, body := g.post(t, "/v1/chat/completions", chat)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "store_unavailable") {
		t.Fatalf("with the database down: %d %s", resp.StatusCode, body)
	}
	if fp.Count() != 0 {
		t.Fatal("a provider was called while the store was down")
	}
	gt.setOpen(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body = g.post(t, "/v1/chat/completions", chat)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never recovered: %d %s", resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// And again when it goes away later.
	gt.setOpen(false)
	deadline = time.Now().Add(15 * time.Second)
	for {
		resp, _ = g.post(t, "/v1/chat/completions", chat)
		if resp.StatusCode == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("kept serving with the store gone")
		}
		time.Sleep(200 * time.Millisecond)
	}
	gt.setOpen(true)
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp, _ = g.post(t, "/v1/chat/completions", chat)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("did not recover the second time")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Contains(g.logs(), "password") {
		t.Log("note: logs mention the word password")
	}
}

// A config reload keeps the same pool, drops no request, and the pool is
// closed when the last config using it unloads.
func TestReloadKeepsPoolAndDropsNothing(t *testing.T) {
	dsn := storetest.PostgresURL(t)
	app := randName("llmgate-reload-")
	u, _ := url.Parse(dsn)
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	schema := randName("llmgate_e2e_")
	dropSchema(t, dsn, schema)
	_, fURL := fake(t, fakeprovider.Config{})
	cfg := pgConfig(fURL, u.String(), schema)
	g := startGateway(t, cfg)
	store := activeApp(t).Store()

	ctx, stop := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := httpPost(g.base+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`)
				if err != nil || resp != 200 {
					if failed.Add(1) < 5 {
						t.Logf("failed: %d %v", resp, err)
					}
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for i := 0; i < 3; i++ {
		time.Sleep(150 * time.Millisecond)
		// The same config with a change that forces a real reload.
		next := strings.Replace(cfg, "serve p", fmt.Sprintf("serve p m %d", i+1), 1)
		next = strings.ReplaceAll(next, "{PORT}", strings.TrimPrefix(g.base, "http://127.0.0.1:"))
		next = "{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n" + strings.TrimPrefix(strings.TrimSpace(next), "{")
		js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(next), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := caddy.Load(js, false); err != nil {
			t.Fatal(err)
		}
		if activeApp(t).Store() != store {
			t.Fatal("a reload opened a new pool for the same DSN")
		}
	}
	time.Sleep(150 * time.Millisecond)
	stop()
	wg.Wait()
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Fatalf("%d requests failed across reloads (%d ok)", failed.Load(), ok.Load())
	}
	conns := func() int {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var n int
		_ = c.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
		return n
	}
	if n := conns(); n == 0 || n > 8 {
		t.Fatalf("%d connections open while serving", n)
	}
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for conns() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections left open after the config unloaded", conns())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func activeApp(t *testing.T) *gateway.App {
	t.Helper()
	v, err := caddy.ActiveContext().App("llm")
	if err != nil {
		t.Fatal(err)
	}
	return v.(*gateway.App)
}

// httpPost sends a request the way SDKs do: with an Idempotency-Key, and
// resending it (twice at most) when the connection broke before an answer.
// A keep-alive connection picked just as the old server of a reload closes
// it is an HTTP/1.1 race no server can close; what must never happen is an
// error answer from the gateway, which is not retried here.
func httpPost(url, body string) (int, error) {
	var resp *http.Response
	var err error
	for try := 0; try < 3; try++ {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", randName("req-"))
		if resp, err = httpClient.Do(req); err == nil {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// PostgreSQL goes away while a stream is in flight: the settlement is kept
// in the local spool and applied exactly once when the database returns.
func TestSettlementSpooledWhileDatabaseIsDown(t *testing.T) {
	dsn := storetest.PostgresURL(t)
	u, _ := url.Parse(dsn)
	gt := newGate(t, u.Host)
	gt.setOpen(true)
	u.Host = gt.ln.Addr().String()
	q := u.Query()
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	schema := randName("llmgate_spool_")
	dropSchema(t, dsn, schema)
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 10, TokensPerSecond: 20})
	cf := strings.Replace(creditsConfig(fURL, ""), "storage sqlite {DB}", "storage postgres \""+u.String()+"\" {\n\t\t\tschema "+schema+"\n\t\t}", 1)
	g := startGateway(t, cf)
	addCredits(t, g, "sp", 1000, "seed")
	tok := userToken(t, "sp")

	req, _ := http.NewRequest("POST", g.base+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"x"}]}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	if _, err := resp.Body.Read(buf); err != nil { // the stream has started
		t.Fatal(err)
	}
	gt.setOpen(false) // the database disappears mid-stream
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(rest), "balance pending") {
		t.Fatalf("stream end: %s", rest)
	}
	gt.setOpen(true)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		var n, bal int64
		_ = c.QueryRow(context.Background(), `SELECT count(*) FROM `+schema+`.llm_usage WHERE user_id = 'sp'`).Scan(&n)
		_ = c.QueryRow(context.Background(), `SELECT balance_micros FROM `+schema+`.llm_balances WHERE user_id = 'sp'`).Scan(&bal)
		c.Close(context.Background())
		if n == 1 && bal == 990 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spooled settlement not applied: %d usage records, balance %d", n, bal)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
