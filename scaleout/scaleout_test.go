// Package scaleout runs llmgate the way a scaled-out deployment does: two
// Caddy processes (not goroutines) built from this checkout, sharing one
// PostgreSQL schema and one Redis prefix, behind which the tests spend,
// stream and kill.
package scaleout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	// The suite runs a binary it builds, which go test's cache cannot see:
	// importing the gateway makes any change to it re-run the suite.
	_ "github.com/llmgate/llmgate"
	"github.com/llmgate/llmgate/fakeprovider"
	"github.com/llmgate/llmgate/storage/storetest"
)

const adminKey = "sk-llm-scaleout-admin-key-0000000"

var binOnce sync.Once
var binPath, binErr = "", error(nil)

// binary builds the llmgate Caddy once per test run.
func binary(t *testing.T) string {
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "llmgate-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "llmgate")
		cmd := exec.Command("go", "build", "-o", binPath, "../cmd/llmgate")
		cmd.Stderr = os.Stderr
		binErr = cmd.Run()
	})
	if binErr != nil {
		t.Fatalf("building llmgate: %v", binErr)
	}
	return binPath
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type instance struct {
	cmd   *exec.Cmd
	base  string
	admin string // admin endpoint, when on
}

func randHex() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// cluster starts n instances on one PostgreSQL schema and Redis prefix.
func cluster(t *testing.T, n int, fakeURL string) ([]*instance, string) {
	return clusterWith(t, options{n: n, providers: oneProvider(fakeURL)})
}

// oneProvider is provider p at baseURL serving model m (1 credit per 1M
// output tokens, at most 50).
func oneProvider(baseURL string) string {
	return fmt.Sprintf(`provider p {
			base_url %s
		}
		model m {
			serve p
			price 0 1.00
			max_output 50
		}`, baseURL)
}

// options shape a cluster: by default the test PostgreSQL and Redis.
type options struct {
	n         int
	dsn       string // PostgreSQL DSN (e.g. through a proxy the test cuts)
	redis     string // Redis host:port
	providers string // provider and model blocks of the llm app
	tier      string // extra lines of tier t
	global    string // extra global options
	admin     bool   // admin endpoint on (goroutine counts)
	router    string // llm_router options
}

func clusterWith(t *testing.T, o options) ([]*instance, string) {
	dsn, redis := o.dsn, o.redis
	if dsn == "" {
		dsn = storetest.PostgresURL(t)
	}
	if redis == "" {
		redis = storetest.RedisAddr(t)
	}
	bin := binary(t)
	schema, prefix := "llmgate_scale_"+randHex(), "llmgate-scale-"+randHex()+":"
	t.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), dsn); err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			_ = c.Close(context.Background())
		}
	})
	dir := t.TempDir()
	var out []*instance
	if o.n == 0 {
		o.n = 1
	}
	for i := 0; i < o.n; i++ {
		port := freePort(t)
		admin, adminURL := "admin off", ""
		if o.admin {
			ap := freePort(t)
			admin, adminURL = fmt.Sprintf("admin 127.0.0.1:%d", ap), fmt.Sprintf("http://127.0.0.1:%d", ap)
		}
		cf := fmt.Sprintf(`{
	%s
	%s
	persist_config off
	auto_https off
	log {
		level ERROR
	}
	llm {
		storage postgres "%s" {
			schema %s
		}
		redis "%s" {
			prefix %s
		}
		no_builtin_catalog
		no_default_tiers
		default_tier t
		hold_ttl 2s
		tier t {
			allowance 0
			%s
		}
		%s
	}
}
http://127.0.0.1:%d {
	route /v1/* {
		llm_auth {
			admin_key %s
		}
		uri strip_prefix /v1
		llm_api
		llm_router {
			%s
		}
		llm_credits
		llm_upstream
	}
}
`, admin, o.global, dsn, schema, redis, prefix, o.tier, o.providers, port, adminKey, o.router)
		path := filepath.Join(dir, fmt.Sprintf("Caddyfile%d", i))
		if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(dir, fmt.Sprint("data", i)), "XDG_CONFIG_HOME="+filepath.Join(dir, fmt.Sprint("cfg", i)))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		in := &instance{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), admin: adminURL}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		out = append(out, in)
		waitUp(t, in)
	}
	return out, schema
}

func waitUp(t *testing.T, in *instance) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", in.base+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("instance never came up")
}

func post(base, path, body string) (int, string, error) {
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Idempotency-Key", randHex())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func sqlInt(t *testing.T, q string) int64 {
	c, err := pgx.Connect(context.Background(), storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int64
	if err := c.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// books checks, in one snapshot, Σ ledger = Σ balances, Σ usage cost = Σ
// usage entries, and no ledger key used twice; it returns the number of
// usage records. (One statement: settlements still committing must not fall
// between two reads.)
func books(t *testing.T, schema string) int64 {
	t.Helper()
	c, err := pgx.Connect(context.Background(), storetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var ledger, balance, usage, charged, dup, records int64
	err = c.QueryRow(context.Background(), `SELECT
		(SELECT COALESCE(sum(amount_micros),0) FROM `+schema+`.llm_ledger),
		(SELECT COALESCE(sum(balance_micros),0) FROM `+schema+`.llm_balances),
		(SELECT COALESCE(sum(cost_micros),0) FROM `+schema+`.llm_usage),
		(SELECT -COALESCE(sum(amount_micros),0) FROM `+schema+`.llm_ledger WHERE kind = 'usage'),
		(SELECT count(*) - count(DISTINCT idem_key) FROM `+schema+`.llm_ledger),
		(SELECT count(*) FROM `+schema+`.llm_usage)`).Scan(&ledger, &balance, &usage, &charged, &dup, &records)
	if err != nil {
		t.Fatal(err)
	}
	if ledger != balance || usage != charged {
		t.Fatalf("books: ledger %d balance %d; usage %d charged %d", ledger, balance, usage, charged)
	}
	if dup != 0 {
		t.Fatalf("%d ledger keys used twice", dup)
	}
	return records
}

// spend sends n chat requests spread over the instances, at most conc at
// once, calling at(i) (when set) before request i. It counts the answers:
// 200, 402, and anything else, describing the first of those.
func spend(ins []*instance, n, conc int, at func(i int)) (ok, refused, other int64, first string) {
	var okN, refusedN, otherN atomic.Int64
	var firstOther atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, conc)
	for i := 0; i < n; i++ {
		if at != nil {
			at(i)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(base string) {
			defer func() { <-sem; wg.Done() }()
			st, _, body, err := chat(base, false)
			switch {
			case err == nil && st == 200:
				okN.Add(1)
			case err == nil && st == 402:
				refusedN.Add(1)
			default:
				otherN.Add(1)
				firstOther.CompareAndSwap(nil, fmt.Sprintf("%d %s %v", st, body, err))
			}
		}(ins[i%len(ins)].base)
	}
	wg.Wait()
	first, _ = firstOther.Load().(string)
	return okN.Load(), refusedN.Load(), otherN.Load(), first
}

// startStreams starts n streams spread over the instances; wait waits for
// them and counts those that completed at the client.
func startStreams(ins []*instance, n int) (wait func() int64) {
	var completed atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(base string) {
			defer wg.Done()
			st, _, body, err := chat(base, true)
			if err == nil && st == 200 && strings.Contains(body, "[complete]") {
				completed.Add(1)
			}
		}(ins[i%len(ins)].base)
	}
	return func() int64 { wg.Wait(); return completed.Load() }
}

// Spending through two processes against one small balance never overspends.
func TestTwoProcessesNeverOverspend(t *testing.T) {
	fp := httptest.NewServer(fakeprovider.New(fakeprovider.Config{CompletionTokens: 10}))
	defer fp.Close()
	ins, _ := cluster(t, 2, fp.URL+"/v1")
	if st, body, err := post(ins[0].base, "/v1/credits/add", `{"user":"admin","amount_micros":1000,"idempotency_key":"seed"}`); err != nil || st != 201 {
		t.Fatalf("%d %s %v", st, body, err)
	}
	ok, refused, other, first := spend(ins, 200, 200, nil)
	if ok != 100 || refused != 100 || other != 0 {
		t.Fatalf("served %d, refused %d, other %d (first: %s)", ok, refused, other, first)
	}
}

// kill -9 of one instance with streams in flight: the other keeps serving,
// the dead one's holds expire and are released, and every request that
// completed at the client is billed.
func TestKillOneInstanceMidStream(t *testing.T) {
	fp := httptest.NewServer(fakeprovider.New(fakeprovider.Config{CompletionTokens: 30, TokensPerSecond: 30}))
	defer fp.Close()
	ins, schema := cluster(t, 2, fp.URL+"/v1")
	if st, _, err := post(ins[0].base, "/v1/credits/add", `{"user":"admin","amount_micros":1000000,"idempotency_key":"seed"}`); err != nil || st != 201 {
		t.Fatal(st, err)
	}
	wait := startStreams(ins, 10)
	time.Sleep(300 * time.Millisecond)
	_ = ins[0].cmd.Process.Signal(syscall.SIGKILL)
	_ = ins[0].cmd.Wait()
	completed := wait()
	// The survivor serves.
	if st, _, body, err := chat(ins[1].base, false); err != nil || st != 200 {
		t.Fatalf("survivor: %d %s %v", st, body, err)
	}
	t.Logf("%d streams completed at the client", completed)
	if completed < 5 {
		t.Fatalf("only %d streams completed; the survivor's half should", completed)
	}
	// The dead instance's holds expire and the survivor's sweeper releases them.
	deadline := time.Now().Add(10 * time.Second)
	for sqlInt(t, "SELECT COALESCE(sum(held_micros),0) FROM "+schema+".llm_balances") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the dead instance's holds were never released")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := sqlInt(t, "SELECT count(*) FROM "+schema+".llm_holds"); n != 0 {
		t.Fatalf("%d holds left", n)
	}
	// Every request completed at a client is billed, and the books balance.
	if n := books(t, schema); n < completed+1 {
		t.Fatalf("%d usage records for %d completed requests", n, completed+1)
	}
}
