package scaleout

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/rueidis"

	"github.com/llmgate/llmgate/fakeprovider"
	"github.com/llmgate/llmgate/storage/storetest"
)

// tcpProxy forwards a port to a target until cut; restore listens again on
// the same port. It stands for a network path the test can break.
type tcpProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target, conns: map[net.Conn]bool{}}
	p.addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p.restore()
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) restore() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
}

// cut refuses new connections and drops the open ones.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// privateRedis runs a redis-server of its own on a free port, which the
// test stops and starts again.
type privateRedis struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func newPrivateRedis(t *testing.T) *privateRedis {
	storetest.RedisAddr(t) // the machine has Redis (or the test skips/fails as configured)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is not on PATH")
		}
		t.Skip("redis-server is not on PATH")
	}
	r := &privateRedis{t: t, port: freePort(t)}
	r.start(bin)
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *privateRedis) start(bin string) {
	r.cmd = exec.Command(bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", r.addr()); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatal("redis-server never listened")
}

func (r *privateRedis) stop() {
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *privateRedis) restart() {
	bin, _ := exec.LookPath("redis-server")
	r.start(bin)
}

// sdkHTTP is the SDK's HTTP client, so a test can close its idle
// connections before counting an instance's goroutines.
var sdkHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// chat sends one chat request through the OpenAI Go SDK (no retries, so
// every status is seen as it is) with the admin key. It returns the status,
// the Retry-After header and what came back: the answer, or the error. A
// stream is complete when its last chunk had a finish reason and no error
// event followed; complete is false otherwise.
func chat(base string, stream bool) (status int, retryAfter, body string, err error) {
	c := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey(adminKey), option.WithMaxRetries(0),
		option.WithRequestTimeout(60*time.Second), option.WithHTTPClient(sdkHTTP))
	params := openai.ChatCompletionNewParams{Model: "m", MaxTokens: openai.Int(10),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}}
	ctx := context.Background()
	var raw *http.Response
	if !stream {
		resp, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&raw))
		if err == nil {
			return raw.StatusCode, raw.Header.Get("Retry-After"), resp.RawJSON(), nil
		}
		var apiErr *openai.Error
		if errors.As(err, &apiErr) {
			return apiErr.StatusCode, apiErr.Response.Header.Get("Retry-After"), apiErr.RawJSON(), nil
		}
		return 0, "", "", err
	}
	params.MaxTokens = openai.Int(50) // model m's output limit
	st := c.Chat.Completions.NewStreaming(ctx, params, option.WithResponseInto(&raw))
	defer st.Close()
	var text strings.Builder
	finished := false
	for st.Next() {
		for _, ch := range st.Current().Choices {
			text.WriteString(ch.Delta.Content)
			finished = finished || ch.FinishReason != ""
		}
	}
	if err := st.Err(); err != nil {
		var apiErr *openai.Error
		if errors.As(err, &apiErr) {
			return apiErr.StatusCode, apiErr.Response.Header.Get("Retry-After"), apiErr.RawJSON(), nil
		}
		if raw == nil {
			return 0, "", "", err
		}
		return raw.StatusCode, "", text.String() + "\n" + err.Error(), nil // an error event mid-stream
	}
	if finished {
		text.WriteString("\n[complete]")
	}
	return raw.StatusCode, "", text.String(), nil
}

func goroutines(t *testing.T, in *instance) int {
	t.Helper()
	resp, err := http.Get(in.admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total")))
	if err != nil {
		t.Fatalf("goroutine count from %q", line)
	}
	return n
}

// Redis lost under load: no client sees an error, the balance (kept in
// PostgreSQL) still bounds spending across both instances, and when Redis
// is back the instances use it again.
func TestRedisLostUnderLoad(t *testing.T) {
	fp := httptest.NewServer(fakeprovider.New(fakeprovider.Config{CompletionTokens: 10}))
	defer fp.Close()
	rd := newPrivateRedis(t)
	ins, schema := clusterWith(t, options{n: 2, redis: rd.addr(), tier: "rpm 100000", providers: oneProvider(fp.URL + "/v1")})
	// 10 output tokens at 1 credit per 1M = 10 micros each: 100 requests' worth.
	if st, body, err := post(ins[0].base, "/v1/credits/add", `{"user":"admin","amount_micros":1000,"idempotency_key":"seed"}`); err != nil || st != 201 {
		t.Fatalf("%d %s %v", st, body, err)
	}
	ok, refused, other, first := spend(ins, 200, 16, func(i int) {
		if i == 40 {
			rd.stop() // Redis dies under load
		}
	})
	if ok != 100 || refused != 100 || other != 0 {
		t.Fatalf("served %d, refused %d, other %d (first: %s)", ok, refused, other, first)
	}
	if n := books(t, schema); n != 100 {
		t.Fatalf("%d usage records for 100 served", n)
	}
	// Redis back: rate counters land in it again.
	rd.restart()
	if st, body, err := post(ins[0].base, "/v1/credits/add", `{"user":"admin","amount_micros":1000,"idempotency_key":"more"}`); err != nil || st != 201 {
		t.Fatalf("%d %s %v", st, body, err)
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{rd.addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, in := range ins {
			if st, _, body, err := chat(in.base, false); err != nil || st != 200 {
				t.Fatalf("after Redis returned: %d %s %v", st, body, err)
			}
		}
		keys, _ := c.Do(context.Background(), c.B().Keys().Pattern("llmgate-scale-*rl:rpm:*").Build()).AsStrSlice()
		if len(keys) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the instances never used Redis again")
		}
		time.Sleep(250 * time.Millisecond)
	}
	books(t, schema)
}

// PostgreSQL unreachable: new requests get 503 with Retry-After and reach
// no provider; the settlements of streams in flight are spooled and applied
// exactly once when it returns.
func TestPostgresUnreachable(t *testing.T) {
	fake := fakeprovider.New(fakeprovider.Config{CompletionTokens: 20, TokensPerSecond: 10})
	fp := httptest.NewServer(fake)
	defer fp.Close()
	dsn := storetest.PostgresURL(t)
	host := "127.0.0.1:5432"
	if i := strings.Index(dsn, "@"); i >= 0 {
		if j := strings.IndexAny(dsn[i+1:], "/?"); j >= 0 {
			host = dsn[i+1 : i+1+j]
		}
	}
	px := newTCPProxy(t, host)
	proxied := strings.Replace(dsn, host, px.addr, 1)
	ins, schema := clusterWith(t, options{n: 2, dsn: proxied, providers: oneProvider(fp.URL + "/v1")})
	if st, body, err := post(ins[0].base, "/v1/credits/add", `{"user":"admin","amount_micros":1000000,"idempotency_key":"seed"}`); err != nil || st != 201 {
		t.Fatalf("%d %s %v", st, body, err)
	}
	const streams = 6
	wait := startStreams(ins, streams)
	time.Sleep(500 * time.Millisecond) // the streams are under way
	before := fake.Count()
	px.cut()
	for i := 0; i < 6; i++ {
		st, retry, body, err := chat(ins[i%2].base, false)
		if err != nil || st != 503 || retry == "" || !strings.Contains(body, "store_unavailable") {
			t.Fatalf("with PostgreSQL unreachable: %d retry-after %q %s %v", st, retry, body, err)
		}
	}
	if n := fake.Count(); n != before {
		t.Fatalf("the provider got %d requests while the store was down", n-before)
	}
	if completed := wait(); completed != streams {
		t.Fatalf("%d of %d streams completed", completed, streams)
	}
	px.restore()
	// The spooled settlements land, once.
	deadline := time.Now().Add(30 * time.Second)
	for sqlInt(t, "SELECT count(*) FROM "+schema+".llm_usage") < streams {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d spooled settlements applied", sqlInt(t, "SELECT count(*) FROM "+schema+".llm_usage"), streams)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// New requests are served again.
	deadline = time.Now().Add(20 * time.Second)
	for _, in := range ins {
		for {
			st, _, _, err := chat(in.base, false)
			if err == nil && st == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("never served again: %d %v", st, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(3 * time.Second) // a second spool pass would double-apply now
	if n := books(t, schema); n != streams+2 {
		t.Fatalf("%d usage records, want %d", n, streams+2)
	}
	deadline = time.Now().Add(10 * time.Second)
	for sqlInt(t, "SELECT count(*) FROM "+schema+".llm_holds") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("holds left behind")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Provider faults across instances: a 429 storm on one provider opens its
// breaker (on both instances) and the other serves; streams reset mid-way
// end with an error event and are billed once for what streamed; no
// goroutine is left behind.
func TestProviderFaultsAcrossInstances(t *testing.T) {
	flaky := fakeprovider.New(fakeprovider.Config{CompletionTokens: 10, Fault: fakeprovider.Fail429, RetryAfter: 30})
	good := fakeprovider.New(fakeprovider.Config{CompletionTokens: 10, Latency: 20 * time.Millisecond})
	ff, gf := httptest.NewServer(flaky), httptest.NewServer(good)
	defer ff.Close()
	defer gf.Close()
	ins, schema := clusterWith(t, options{n: 2, admin: true, providers: fmt.Sprintf(`provider flaky {
			base_url %s/v1
			priority 1
		}
		provider good {
			base_url %s/v1
			priority 5
		}
		model m {
			serve flaky
			serve good
			price 0 1.00
			max_output 50
		}`, ff.URL, gf.URL)})
	if st, body, err := post(ins[0].base, "/v1/credits/add", `{"user":"admin","amount_micros":1000000,"idempotency_key":"seed"}`); err != nil || st != 201 {
		t.Fatalf("%d %s %v", st, body, err)
	}
	// Warm both instances up, then count their goroutines.
	for _, in := range ins {
		if st, _, body, err := chat(in.base, false); err != nil || st != 200 {
			t.Fatalf("%d %s %v", st, body, err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // shared breaker state syncs each second
	g0 := []int{goroutines(t, ins[0]), goroutines(t, ins[1])}
	flakyBefore := flaky.Count()

	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func(base string, stream bool) {
			defer wg.Done()
			if st, _, body, err := chat(base, stream); err != nil || st != 200 || (stream && !strings.Contains(body, "[complete]")) {
				failed.Add(1)
				t.Logf("%d %s %v", st, body, err)
			}
		}(ins[i%2].base, i%3 == 0)
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed during the 429 storm", failed.Load())
	}
	// The storm opened the breaker: the flaky provider was left alone
	// (each instance tried it at most once before adopting the opening).
	if n := flaky.Count() - flakyBefore; n > 2 {
		t.Fatalf("the 429ing provider got %d more requests", n)
	}

	// Streams reset mid-way by the provider that serves.
	good.Set(fakeprovider.Config{CompletionTokens: 10, Fault: fakeprovider.ResetMidStream, FaultAfter: 3})
	usageBefore := books(t, schema)
	var broken atomic.Int64
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(base string) {
			defer wg.Done()
			st, _, body, err := chat(base, true)
			if err == nil && st == 200 && strings.Contains(body, "upstream_stream_error") && !strings.Contains(body, "[complete]") {
				broken.Add(1)
			}
		}(ins[i%2].base)
	}
	wg.Wait()
	if broken.Load() != 10 {
		t.Fatalf("%d of 10 reset streams ended with an error event", broken.Load())
	}
	// Each is billed once, for what streamed (nothing twice: books checks
	// every ledger key is used once).
	deadline := time.Now().Add(10 * time.Second)
	for books(t, schema) != usageBefore+10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d usage records for 10 broken streams", books(t, schema)-usageBefore)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := sqlInt(t, "SELECT count(*) FROM "+schema+".llm_usage WHERE tokens_out > 10"); n != 0 {
		t.Fatalf("%d requests billed more than the provider sent", n)
	}
	// No goroutine left behind once the idle keep-alive connections (the
	// clients' and the upstream pool's) are closed.
	http.DefaultClient.CloseIdleConnections()
	sdkHTTP.CloseIdleConnections()
	ff.CloseClientConnections()
	gf.CloseClientConnections()
	for i, in := range ins {
		deadline := time.Now().Add(15 * time.Second)
		for {
			g := goroutines(t, in)
			if g <= g0[i]+5 {
				break
			}
			if time.Now().After(deadline) {
				resp, _ := http.Get(in.admin + "/debug/pprof/goroutine?debug=1")
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Fatalf("instance %d: %d goroutines, %d before\n%s", i, g, g0[i], b)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// Slowloris: connections that trickle their headers are closed after the
// server's read_header timeout, bodies that trickle get 408 after the
// router's body_timeout, and hundreds of them keep memory bounded.
func TestSlowloris(t *testing.T) {
	fp := httptest.NewServer(fakeprovider.New(fakeprovider.Config{CompletionTokens: 10}))
	defer fp.Close()
	ins, _ := clusterWith(t, options{n: 1, router: "body_timeout 3s", global: `servers {
		timeouts {
			read_header 2s
		}
	}`, providers: oneProvider(fp.URL + "/v1")})
	in := ins[0]
	if st, body, err := post(in.base, "/v1/credits/add", `{"user":"admin","amount_micros":1000000,"idempotency_key":"seed"}`); err != nil || st != 201 {
		t.Fatalf("%d %s %v", st, body, err)
	}
	addr := strings.TrimPrefix(in.base, "http://")
	pid := in.cmd.Process.Pid
	rss0 := procStatus(pid, "VmRSS")

	const n = 300
	type result struct {
		status int
		closed bool
	}
	results := make([]result, 2*n)
	var wg sync.WaitGroup
	// Slow headers: a request line and one header, then silence.
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: "+addr+"\r\n")
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			b, err := io.ReadAll(c)
			results[i] = result{closed: err == nil, status: statusOf(b)}
		}(i)
	}
	// Slow bodies: all headers, a declared 1 MiB body, a few bytes of it.
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{\"model\":", addr, adminKey)
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			b, err := io.ReadAll(c)
			results[n+i] = result{closed: err == nil, status: statusOf(b)}
		}(i)
	}
	// While they hang, the gateway serves others.
	time.Sleep(500 * time.Millisecond)
	if st, _, body, err := chat(in.base, false); err != nil || st != 200 {
		t.Fatalf("with slow clients attached: %d %s %v", st, body, err)
	}
	peak := procStatus(pid, "VmRSS")
	wg.Wait()
	for i, r := range results[:n] {
		if !r.closed || r.status != 0 && r.status != 408 {
			t.Fatalf("slow headers %d: closed %v, status %d", i, r.closed, r.status)
		}
	}
	for i, r := range results[n:] {
		if !r.closed || r.status != 408 {
			t.Fatalf("slow body %d: closed %v, status %d", i, r.closed, r.status)
		}
	}
	hwm := procStatus(pid, "VmHWM")
	t.Logf("RSS %d KiB before, %d KiB with %d slow clients attached, peak %d KiB", rss0, peak, 2*n, hwm)
	// 600 slow clients, each declaring a 1 MiB body, must not cost their
	// declared sizes (600 MiB): bounded well under that.
	if hwm-rss0 > 200<<10 {
		t.Fatalf("RSS grew %d KiB for %d slow clients", hwm-rss0, 2*n)
	}
}

func statusOf(b []byte) int {
	f := strings.Fields(string(b))
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// procStatus reads a kB figure of /proc/<pid>/status.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
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

// Abuse against a separate process, many at once: each gets its status, the
// provider sees none of the refused ones, and the process's peak RSS stays
// bounded (reported).
func TestAbuseKeepsMemoryBounded(t *testing.T) {
	fake := fakeprovider.New(fakeprovider.Config{CompletionTokens: 3, HugeEvent: 1 << 20})
	fp := httptest.NewServer(fake)
	defer fp.Close()
	ins, _ := clusterWith(t, options{n: 1, providers: fmt.Sprintf(`provider p {
			base_url %s/v1
		}
		model m {
			serve p
			price 0 1.00
			max_output 50
			context 8192
		}`, fp.URL)})
	in := ins[0]
	if st, body, err := post(in.base, "/v1/credits/add", `{"user":"admin","amount_micros":1000000000,"idempotency_key":"seed"}`); err != nil || st != 201 {
		t.Fatalf("%d %s %v", st, body, err)
	}
	pid := in.cmd.Process.Pid
	rss0 := procStatus(pid, "VmRSS")
	many := strings.TrimSuffix(strings.Repeat(`{"role":"user","content":"hi"},`, 10_000), ",")
	cases := []struct {
		name, body string
		status     int
	}{
		{"10,000 messages (over the context window)", `{"model":"m","messages":[` + many + `]}`, 400},
		{"absurd max_tokens", `{"model":"m","max_tokens":1099511627776,"messages":[{"role":"user","content":"x"}]}`, 400},
		{"absurd n", `{"model":"m","n":1000000,"messages":[{"role":"user","content":"x"}]}`, 400},
		{"deep nesting", `{"model":"m","messages":[{"role":"user","content":"x","extra":` + strings.Repeat("[", 500_000) + strings.Repeat("]", 500_000) + `}]}`, 400},
		{"invalid UTF-8", "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", 400},
		{"over the 10 MiB limit", `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("a", 11<<20) + `"}]}`, 413},
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", in.base+"/v1/chat/completions", strings.NewReader(c.body))
				req.Header.Set("Authorization", "Bearer "+adminKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("%s: %v", c.name, err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != c.status || !strings.Contains(string(b), `"error"`) {
					t.Errorf("%s: %d %.200s", c.name, resp.StatusCode, b)
				}
			}()
		}
	}
	// Meanwhile, streams whose upstream sends a 1 MiB SSE line pass it on.
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, _, body, err := chat(in.base, true)
			if err != nil || st != 200 || len(body) < 1<<20 || !strings.Contains(body, "[complete]") {
				t.Errorf("1 MiB SSE line: %d %d bytes %v", st, len(body), err)
			}
		}()
	}
	wg.Wait()
	if n := fake.Count(); n != 8 {
		t.Fatalf("the provider saw %d requests, want the 8 streams only", n)
	}
	hwm := procStatus(pid, "VmHWM")
	t.Logf("RSS %d KiB idle, peak %d KiB over 48 abusive requests (1 MiB to 11 MiB bodies) and 8 streams with 1 MiB events", rss0, hwm)
	if hwm-rss0 > 400<<10 {
		t.Fatalf("peak RSS grew %d KiB", hwm-rss0)
	}
}
