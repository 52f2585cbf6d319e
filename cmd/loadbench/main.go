// Command loadbench measures what the llmgate chain costs against bare Caddy
// reverse_proxy, in one run on this machine:
//
//	go run ./cmd/loadbench -c 64 -d 10s
//
// It builds the llmgate Caddy (./cmd/llmgate) and starts two instances on
// loopback, both in front of in-process fake providers:
//
//   - instance A (embedded SQLite store) serves (a) a bare `reverse_proxy`
//     with keep-alive pool 256, (b) the routing chain alone (llm_api,
//     llm_router, llm_upstream, unauthenticated) and (c) the full chain:
//     llm_auth with an HS256 JWT, llm_api, llm_byok (the caller has a BYOK
//     key, decrypted per request), llm_router with the model `auto` (the
//     local classifier picks the model), llm_credits (a hold and a
//     settlement with a usage record per request) and llm_upstream;
//   - instance B serves the same full chain on PostgreSQL and Redis (-pg
//     and -redis, default $LLM_TEST_POSTGRES_URL and $LLM_TEST_REDIS_ADDR;
//     its own schema and key prefix, dropped at the end). Without them that
//     row is skipped.
//
// Each target is driven by a closed loop of -c concurrent clients for -d,
// then once more with one client in flight. It prints requests/s, p50 and
// p99 latency and the Caddy process's CPU time per request (from /proc; the
// PostgreSQL and Redis servers' own CPU is not in it), then the ratios
// against bare reverse_proxy.
//
// Last, -streams slow streams (one token a second) are opened at once,
// first through a bare reverse_proxy (in an instance of its own), then
// through the full chain of instance A, and held idle: it reports the
// instance's resident memory, goroutine stacks, heap and goroutines before
// and while they are in flight, per stream, and instance A's peak RSS over
// the whole run.
//
// -pprof DIR writes CPU profiles of the full-chain phases (through Caddy's
// admin endpoint) for `go tool pprof`.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/llmgate/llmgate/fakeprovider"
)

// benchKey is the bootstrap admin key of the charged sites.
const benchKey = "sk-llm-loadbench-admin-key-000000"

func main() {
	conc := flag.Int("c", 64, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "duration of each phase")
	caddyBin := flag.String("caddy", "", "llmgate caddy binary (default: build ./cmd/llmgate)")
	stream := flag.Bool("stream", false, "send streaming requests")
	pgURL := flag.String("pg", os.Getenv("LLM_TEST_POSTGRES_URL"), "PostgreSQL DSN for the full chain on PostgreSQL+Redis (empty: skip)")
	redisAddr := flag.String("redis", os.Getenv("LLM_TEST_REDIS_ADDR"), "Redis host:port for that chain")
	streams := flag.Int("streams", 1000, "slow streams held open at once (0: skip)")
	pprofDir := flag.String("pprof", "", "write CPU profiles of the full-chain phases here")
	users := flag.Int("users", 16, "distinct callers of the full chain (each its own balance row)")
	flag.Parse()
	if *dur > 2*time.Minute || *conc > 1024 || *conc < 1 || *streams < 0 || *streams > 5000 || *users < 1 || *users > 1000 {
		fatal("keep -d at most 2m, -c from 1 to 1024, -streams from 0 to 5000 and -users from 1 to 1000")
	}

	dir, err := os.MkdirTemp("", "loadbench")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(dir)
	atExit = append(atExit, func() { _ = os.RemoveAll(dir) })
	bin := *caddyBin
	if bin == "" {
		bin = filepath.Join(dir, "llmgate")
		b := exec.Command("go", "build", "-o", bin, "./cmd/llmgate")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			fatalf("build: %v", err)
		}
	}

	fast := serve(fakeprovider.New(fakeprovider.Config{CompletionTokens: 16, NoRecord: true, Key: "bench-provider-key"}))
	slow := serve(fakeprovider.New(fakeprovider.Config{CompletionTokens: 600, TokensPerSecond: 1, NoRecord: true, Key: "bench-provider-key"}))

	ring := make([]byte, 32)
	_, _ = rand.Read(ring)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	env := append(os.Environ(), "GOMAXPROCS=2",
		"LOADBENCH_RING="+base64.URLEncoding.EncodeToString(ring),
		"LOADBENCH_JWT="+hex.EncodeToString(secret),
		"LOADBENCH_ADMIN="+benchKey)
	var tokens []string
	for i := 0; i < *users; i++ {
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": fmt.Sprintf("bench-user-%d", i), "exp": time.Now().Add(24 * time.Hour).Unix()}).
			SignedString([]byte(hex.EncodeToString(secret)))
		if err != nil {
			fatal(err)
		}
		tokens = append(tokens, "Bearer "+token)
	}

	// Instance A: SQLite.
	bare, chain, fullA, adminA := freePort(), freePort(), freePort(), freePort()
	cfA := globals(adminA, fmt.Sprintf("storage sqlite %s", filepath.Join(dir, "bench.db")), fast, slow) + fmt.Sprintf(`
http://127.0.0.1:%[2]d {
	reverse_proxy %[1]s {
		transport http {
			keepalive_idle_conns_per_host 256
		}
	}
}
http://127.0.0.1:%[3]d {
	handle_path /v1/* {
		llm_api {
			allow_unauthenticated
		}
		llm_router {
			allow_unauthenticated
		}
		llm_upstream
	}
}
`, fast, bare, chain) + fullSite(fullA)
	a := start(bin, dir, "a", cfA, env, fullA)
	defer a.stop()
	setup(fullA, tokens)

	// Instance B: PostgreSQL + Redis.
	var b *proc
	fullB := 0
	if *pgURL != "" && *redisAddr != "" {
		suffix := hex.EncodeToString(secret[:4])
		schema := "llmgate_loadbench_" + suffix
		defer dropSchema(*pgURL, schema)
		atExit = append(atExit, func() { dropSchema(*pgURL, schema) })
		fullB = freePort()
		cfB := globals(freePort(), fmt.Sprintf("storage postgres %s {\n\t\t\tschema %s\n\t\t\tmax_conns 32\n\t\t}\n\t\tredis redis://%s {\n\t\t\tprefix loadbench-%s:\n\t\t}",
			*pgURL, schema, *redisAddr, suffix), fast, slow) + fullSite(fullB)
		b = start(bin, dir, "b", cfB, env, fullB)
		defer b.stop()
		setup(fullB, tokens)
	} else {
		log.Print("no -pg/-redis (LLM_TEST_POSTGRES_URL, LLM_TEST_REDIS_ADDR): the PostgreSQL+Redis row is skipped")
	}

	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":64}`
	autoBody := `{"model":"auto","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":64}`
	if *stream {
		body = strings.Replace(body, `{"model"`, `{"stream":true,"model"`, 1)
		autoBody = strings.Replace(autoBody, `{"model"`, `{"stream":true,"model"`, 1)
	}
	type target struct {
		name, url, body string
		auth            []string
		p               *proc
	}
	targets := []target{
		{"bare reverse_proxy", url(bare), body, []string{"Bearer bench-provider-key"}, a},
		{"routing chain", url(chain), body, []string{"Bearer bench-provider-key"}, a},
		{"full chain, SQLite", url(fullA), autoBody, tokens, a},
	}
	if b != nil {
		targets = append(targets, target{"full chain, PG+Redis", url(fullB), autoBody, tokens, b})
	}
	fmt.Printf("loadbench: %d clients, %v per phase, %d cores, stream=%v, %d users on the full chain\n\n", *conc, *dur, numCPU(), *stream, *users)
	fmt.Printf("%-22s %5s %10s %10s %10s %10s %12s\n", "target", "conc", "req/s", "p50", "p99", "cpu/req", "machine/req")
	res := make([][]result, 2)
	for ci, c := range []int{*conc, 1} {
		for _, tg := range targets {
			run(tg.url, tg.body, tg.auth, c, 2*time.Second, tg.p.pid) // warm up
			var prof chan struct{}
			if *pprofDir != "" && strings.HasPrefix(tg.name, "full") {
				prof = tg.p.profile(filepath.Join(*pprofDir, fmt.Sprintf("cpu-%s-c%d.pprof", strings.NewReplacer(" ", "", ",", "-", "+", "").Replace(tg.name), c)), *dur-time.Second)
			}
			r := run(tg.url, tg.body, tg.auth, c, *dur, tg.p.pid)
			if prof != nil {
				<-prof
			}
			res[ci] = append(res[ci], r)
			fmt.Printf("%-22s %5d %10.0f %10v %10v %10v %12v\n", tg.name, c, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond),
				r.cpuPerReq.Round(100*time.Nanosecond), r.sysPerReq.Round(100*time.Nanosecond))
		}
	}
	fmt.Println()
	for i := 1; i < len(targets); i++ {
		fmt.Printf("%-22s throughput %5.1f%% of bare at %d clients; p50 with 1 in flight %+v\n", targets[i].name,
			100*res[0][i].rps/res[0][0].rps, *conc, (res[1][i].p50 - res[1][0].p50).Round(time.Microsecond))
	}

	if *streams > 0 {
		// The same streams through bare reverse_proxy, in an instance of
		// their own (freed memory stays in a process's RSS), for scale.
		bareSlow, adminC := freePort(), freePort()
		cfC := globals(adminC, fmt.Sprintf("storage sqlite %s", filepath.Join(dir, "bare.db")), fast, slow) + fmt.Sprintf(`
http://127.0.0.1:%d {
	reverse_proxy %s {
		transport http {
			keepalive_idle_conns_per_host 256
		}
	}
}
`, bareSlow, slow)
		c := start(bin, dir, "c", cfC, env, bareSlow)
		slowStreams(c, "bare reverse_proxy", url(bareSlow), []string{"Bearer bench-provider-key"}, *streams, "")
		c.stop()
		slowStreams(a, "the full chain (SQLite)", url(fullA), tokens, *streams, *pprofDir)
	}
	fmt.Printf("\ninstance A peak RSS over the run: %.1f MiB\n", float64(a.status("VmHWM"))/1024)
}

// atExit runs on every exit, fatal ones too: no Caddy is left behind.
var atExit []func()

func fatal(v ...any) { fatalf("%s", fmt.Sprint(v...)) }

func fatalf(format string, v ...any) {
	log.Printf(format, v...)
	for i := len(atExit) - 1; i >= 0; i-- {
		atExit[i]()
	}
	os.Exit(1)
}

func url(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", port) }

// globals is the Caddyfile's global options: admin for profiles and
// goroutine counts, and the llm app on the given storage.
func globals(admin int, storage, fast, slow string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	log {
		level ERROR
	}
	llm {
		%s
		no_default_tiers
		default_tier bench
		tier bench {
			allowance 0
			byok prefer fee 0.0001
		}
		byok {
			key_ring {env.LOADBENCH_RING}
		}
		provider openai {
			base_url http://%s/v1
			api_key bench-provider-key
		}
		provider slow {
			base_url http://%s/v1
			api_key bench-provider-key
			stream_idle_timeout 10m
		}
		model slow-model {
			serve slow
			price 1 1
		}
	}
}
`, admin, storage, fast, slow)
}

func fullSite(port int) string {
	return fmt.Sprintf(`http://127.0.0.1:%d {
	handle_path /v1/* {
		llm_auth {
			admin_key {env.LOADBENCH_ADMIN}
			jwt {
				secret {env.LOADBENCH_JWT}
			}
		}
		llm_api
		llm_byok
		llm_router
		llm_credits
		llm_upstream
	}
}
`, port)
}

// setup gives each bench user credits and a BYOK key for openai.
func setup(port int, tokens []string) {
	base := fmt.Sprintf("http://127.0.0.1:%d/v1", port)
	for i, tok := range tokens {
		post(base+"/credits/add", "Bearer "+benchKey, fmt.Sprintf(`{"user":"bench-user-%d","amount_micros":1000000000000000,"idempotency_key":"bench-%d"}`, i, i), http.StatusCreated)
		post(base+"/byok/keys", tok, `{"provider":"openai","api_key":"bench-provider-key","name":"bench"}`, http.StatusCreated)
	}
}

// post sends a JSON body; 503 (the store still starting) is retried.
func post(u, bearer, body string, want int) {
	for try := 0; ; try++ {
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
		req.Header.Set("Authorization", bearer)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fatalf("%s: %v", u, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode == want:
			return
		case resp.StatusCode == http.StatusServiceUnavailable && try < 40:
			time.Sleep(250 * time.Millisecond)
		default:
			fatalf("%s: %d %s", u, resp.StatusCode, b)
		}
	}
}

type proc struct {
	cmd   *exec.Cmd
	pid   int
	admin string
}

func start(bin, dir, name, cf string, env []string, port int) *proc {
	path := filepath.Join(dir, "Caddyfile."+name)
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Stderr = os.Stderr
	cmd.Env = append(env, "XDG_DATA_HOME="+filepath.Join(dir, "data-"+name), "XDG_CONFIG_HOME="+filepath.Join(dir, "config-"+name))
	if err := cmd.Start(); err != nil {
		fatal(err)
	}
	i := strings.Index(cf, "admin 127.0.0.1:")
	admin := "http://" + strings.Fields(cf[i+len("admin "):])[0]
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, admin: admin}
	atExit = append(atExit, p.stop)
	waitPort(port)
	return p
}

func (p *proc) stop() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() }

// status reads a kB figure of /proc/<pid>/status (VmRSS, VmHWM).
func (p *proc) status(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}

// goroutines counts the process's goroutines through the admin endpoint.
func (p *proc) goroutines() int {
	resp, err := http.Get(p.admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total")))
	return n
}

// metric reads one gauge of the process's Prometheus metrics (admin /metrics).
func (p *proc) metric(name string) float64 {
	resp, err := http.Get(p.admin + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return 0
}

// profile writes a CPU profile of d to path; the channel closes when done.
func (p *proc) profile(path string, d time.Duration) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.admin, max(1, int(d.Seconds()))))
		if err != nil {
			log.Printf("profile: %v", err)
			return
		}
		defer resp.Body.Close()
		_ = os.MkdirAll(filepath.Dir(path), 0o755)
		f, err := os.Create(path)
		if err != nil {
			log.Printf("profile: %v", err)
			return
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}()
	return done
}

// save writes what an admin endpoint answers to path.
func (p *proc) save(endpoint, path string) {
	resp, err := http.Get(p.admin + endpoint)
	if err != nil {
		log.Printf("%s: %v", endpoint, err)
		return
	}
	defer resp.Body.Close()
	_ = os.MkdirAll(filepath.Dir(path), 0o755)
	if f, err := os.Create(path); err == nil {
		_, _ = io.Copy(f, resp.Body)
		_ = f.Close()
	}
}

type result struct {
	rps       float64
	p50, p99  time.Duration
	cpuPerReq time.Duration
	sysPerReq time.Duration // all processes: generator, providers, databases
	errors    int
}

func run(url, body string, auth []string, conc int, d time.Duration, pid int) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxIdleConns: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	lats := make([][]time.Duration, conc)
	errs := make([]int, conc)
	var firstErr atomic.Value
	cpu0, sys0 := procCPU(pid), machineCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			b := []byte(body)
			for ctx.Err() == nil {
				t := time.Now()
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", auth[i%len(auth)])
				resp, err := client.Do(req)
				if err != nil {
					errs[i]++
					continue
				}
				rb, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs[i]++
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %s", resp.StatusCode, rb))
					continue
				}
				lats[i] = append(lats[i], time.Since(t))
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu, sys := procCPU(pid)-cpu0, machineCPU()-sys0
	var all []time.Duration
	e := 0
	for i := range lats {
		all = append(all, lats[i]...)
		e += errs[i]
	}
	if e > 0 {
		log.Printf("%s: %d errors (first: %v)", url, e, firstErr.Load())
	}
	if len(all) == 0 {
		fatalf("%s: no successful requests", url)
	}
	slices.Sort(all)
	return result{
		rps: float64(len(all)) / elapsed.Seconds(),
		p50: all[len(all)/2], p99: all[len(all)*99/100],
		cpuPerReq: cpu / time.Duration(len(all)), sysPerReq: sys / time.Duration(len(all)), errors: e,
	}
}

// slowStreams opens n streams at once through a site, waits until
// each has its first token, and reports the instance's memory and
// goroutines per stream while they sit idle between tokens.
func slowStreams(p *proc, name, url string, tokens []string, n int, pprofDir string) {
	time.Sleep(time.Second)
	rss0, g0, st0, hp0 := p.status("VmRSS"), p.goroutines(), p.metric("go_memstats_stack_inuse_bytes"), p.metric("go_memstats_heap_inuse_bytes")
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	client := &http.Client{Transport: tr}
	var started, failed atomic.Int64
	var wg sync.WaitGroup
	body := `{"model":"slow-model","stream":true,"messages":[{"role":"user","content":"Tell me a long story."}],"max_tokens":1000}`
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", tokens[i%len(tokens)])
			resp, err := client.Do(req)
			if err != nil {
				failed.Add(1)
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				b, _ := io.ReadAll(resp.Body)
				if failed.Add(1) == 1 {
					log.Printf("slow stream: %d %s", resp.StatusCode, b)
				}
				return
			}
			r := bufio.NewReader(resp.Body)
			counted := false
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if !counted && strings.HasPrefix(line, "data: {") {
					counted = true
					started.Add(1)
				}
			}
		}(i)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for started.Load()+failed.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // idle between tokens
	rss1, g1, st1, hp1 := p.status("VmRSS"), p.goroutines(), p.metric("go_memstats_stack_inuse_bytes"), p.metric("go_memstats_heap_inuse_bytes")
	if pprofDir != "" {
		p.save("/debug/pprof/heap", filepath.Join(pprofDir, "heap-slow-streams.pprof"))
	}
	cancel()
	wg.Wait()
	tr.CloseIdleConnections()
	time.Sleep(2 * time.Second)
	rss2, g2 := p.status("VmRSS"), p.goroutines()
	s := started.Load()
	fmt.Printf("\nslow streams through %s, one token a second: %d open, %d failed\n", name, s, failed.Load())
	fmt.Printf("  RSS %.1f MiB idle → %.1f MiB with them in flight → %.1f MiB after they end\n", float64(rss0)/1024, float64(rss1)/1024, float64(rss2)/1024)
	fmt.Printf("  goroutines %d idle → %d in flight → %d after\n", g0, g1, g2)
	if s > 0 {
		fmt.Printf("  per stream: %.1f KiB RSS (goroutine stacks %.1f KiB, heap in use %.1f KiB), %.1f goroutines\n",
			float64(rss1-rss0)/float64(s), (st1-st0)/1024/float64(s), (hp1-hp0)/1024/float64(s), float64(g1-g0)/float64(s))
	}
}

func serve(h http.Handler) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	go func() { _ = (&http.Server{Handler: h}).Serve(l) }()
	return l.Addr().String()
}

func dropSchema(dsn, schema string) {
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		return
	}
	defer c.Close(context.Background())
	_, _ = c.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
}

// machineCPU is the busy CPU time of the whole machine, from /proc/stat.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 {
			continue // idle, iowait
		}
		if i >= 8 {
			break // guest time is already in user
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / 100
}

// procCPU is the user+system CPU time a process has used, from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitPort(p int) {
	for i := 0; i < 400; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	fatalf("port %d never opened", p)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
