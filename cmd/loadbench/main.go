// Command loadbench measures what the llmgate chain costs against bare Caddy
// reverse_proxy, in one run on this machine:
//
//	go run ./cmd/loadbench -c 64 -d 10s
//
// It builds the llmgate Caddy (./cmd/llmgate), starts it with three sites on
// loopback, (a) a bare `reverse_proxy` to a fake provider with keep-alive
// pool 256, (b) the llmgate chain (llm_api, llm_router, llm_upstream) to
// the same fake provider, and (c) that chain with llm_auth and llm_credits
// (an API key check, a hold and a settlement with a usage record per
// request, on the embedded SQLite store), then drives each with a closed loop of -c
// concurrent clients for -d, and once more with one client in flight. It
// prints requests/s, p50 and p99 latency and the Caddy process's CPU time
// per request (from /proc), and the ratios.
package main

import (
	"bytes"
	"context"
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
	"time"

	"github.com/llmgate/llmgate/fakeprovider"
)

func main() {
	conc := flag.Int("c", 64, "concurrent clients")
	dur := flag.Duration("d", 10*time.Second, "duration of each phase")
	caddyBin := flag.String("caddy", "", "llmgate caddy binary (default: build ./cmd/llmgate)")
	stream := flag.Bool("stream", false, "send streaming requests")
	flag.Parse()
	if *dur > 2*time.Minute || *conc > 1024 || *conc < 1 {
		log.Fatal("keep -d at most 2m and -c from 1 to 1024")
	}

	dir, err := os.MkdirTemp("", "loadbench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := *caddyBin
	if bin == "" {
		bin = filepath.Join(dir, "llmgate")
		b := exec.Command("go", "build", "-o", bin, "./cmd/llmgate")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			log.Fatalf("build: %v", err)
		}
	}

	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fp := &http.Server{Handler: fakeprovider.New(fakeprovider.Config{CompletionTokens: 16, NoRecord: true})}
	go fp.Serve(fl)
	defer fp.Close()

	bare, chain, charged := freePort(), freePort(), freePort()
	cf := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	log {
		level ERROR
	}
	llm {
		storage sqlite %[5]s
		no_builtin_catalog
		no_default_tiers
		default_tier bench
		tier bench {
			allowance 0
		}
		provider fake {
			base_url http://%[1]s/v1
			api_key bench-key
		}
		model bench-model {
			serve fake
			price 2.50 10.00
		}
	}
}
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
http://127.0.0.1:%[4]d {
	handle_path /v1/* {
		llm_auth {
			admin_key %[6]s
		}
		llm_api
		llm_router
		llm_credits
		llm_upstream
	}
}
`, fl.Addr().String(), bare, chain, charged, filepath.Join(dir, "bench.db"), benchKey)
	cfPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(cf), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfPath, "--adapter", "caddyfile")
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitPort(bare)
	waitPort(chain)
	waitPort(charged)
	// Enough credit for any run.
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/credits/add", charged),
		strings.NewReader(`{"user":"admin","amount_micros":1000000000000000,"idempotency_key":"bench"}`))
	req.Header.Set("Authorization", "Bearer "+benchKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		log.Fatalf("adding bench credits: %v %v", resp, err)
	}

	body := `{"model":"bench-model","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":64}`
	if *stream {
		body = `{"model":"bench-model","stream":true,"messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":64}`
	}
	targets := []struct{ name, url string }{
		{"bare reverse_proxy", fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", bare)},
		{"llmgate chain", fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", chain)},
		{"chain+auth+credits", fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", charged)},
	}
	fmt.Printf("loadbench: %d clients, %v per phase, %d cores, stream=%v\n\n", *conc, *dur, numCPU(), *stream)
	fmt.Printf("%-20s %5s %10s %10s %10s %12s\n", "target", "conc", "req/s", "p50", "p99", "cpu/req")
	var res [2][3]result
	for ci, c := range []int{*conc, 1} {
		for ti, tg := range targets {
			run(tg.url, body, c, 2*time.Second, cmd.Process.Pid) // warm up
			r := run(tg.url, body, c, *dur, cmd.Process.Pid)
			res[ci][ti] = r
			fmt.Printf("%-20s %5d %10.0f %10v %10v %12v\n", tg.name, c, r.rps, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.cpuPerReq.Round(100*time.Nanosecond))
		}
	}
	fmt.Printf("\nchain/bare throughput at %d clients: %.1f%%\n", *conc, 100*res[0][1].rps/res[0][0].rps)
	fmt.Printf("chain added CPU per request: %v\n", (res[0][1].cpuPerReq - res[0][0].cpuPerReq).Round(100*time.Nanosecond))
	fmt.Printf("chain added p50 latency with 1 in flight: %v\n", (res[1][1].p50 - res[1][0].p50).Round(time.Microsecond))
	fmt.Printf("chain+auth+credits/bare throughput at %d clients: %.1f%%\n", *conc, 100*res[0][2].rps/res[0][0].rps)
	fmt.Printf("auth+credits added p50 latency with 1 in flight: %v (SQLite store)\n", (res[1][2].p50 - res[1][1].p50).Round(time.Microsecond))
}

// benchKey is the bootstrap admin key of the charged site.
const benchKey = "sk-llm-loadbench-admin-key-000000"

type result struct {
	rps       float64
	p50, p99  time.Duration
	cpuPerReq time.Duration
	errors    int
}

func run(url, body string, conc int, d time.Duration, pid int) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxIdleConns: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	lats := make([][]time.Duration, conc)
	errs := make([]int, conc)
	cpu0 := procCPU(pid)
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
				req.Header.Set("Authorization", "Bearer "+benchKey)
				resp, err := client.Do(req)
				if err != nil {
					errs[i]++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs[i]++
					continue
				}
				lats[i] = append(lats[i], time.Since(t))
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := procCPU(pid) - cpu0
	var all []time.Duration
	e := 0
	for i := range lats {
		all = append(all, lats[i]...)
		e += errs[i]
	}
	if e > 0 {
		log.Printf("%s: %d errors", url, e)
	}
	if len(all) == 0 {
		log.Fatalf("%s: no successful requests", url)
	}
	slices.Sort(all)
	return result{
		rps: float64(len(all)) / elapsed.Seconds(),
		p50: all[len(all)/2], p99: all[len(all)*99/100],
		cpuPerReq: cpu / time.Duration(len(all)), errors: e,
	}
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
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitPort(p int) {
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatalf("port %d never opened", p)
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
