package caddymodule_test

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/fakeprovider"
)

// Hostile or absurd input gets the right status, fast, and changes nothing.
func TestAbuse(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{})
	_, sURL := fake(t, fakeprovider.Config{})
	cf := strings.Replace(twoProviders(pURL, sURL, ""), "max_body 64KB", "max_body 2MB", 1)
	g := startGateway(t, cf)
	many := strings.TrimSuffix(strings.Repeat(`{"role":"user","content":"hi"},`, 10_000), ",")
	cases := []struct {
		name, body string
		status     int
	}{
		// 10,000 messages are read fine, and refused for the model's 8,192-token window.
		{"10,000 messages", `{"model":"test-model","messages":[` + many + `]}`, 400},
		{"absurd max_tokens", `{"model":"test-model","max_tokens":1099511627776,"messages":[{"role":"user","content":"x"}]}`, 400},
		{"absurd n", `{"model":"test-model","n":1000000,"messages":[{"role":"user","content":"x"}]}`, 400},
		{"deep nesting", `{"model":"test-model","messages":[{"role":"user","content":"x","extra":` + strings.Repeat("[", 500_000) + strings.Repeat("]", 500_000) + `}]}`, 400},
		{"invalid UTF-8", "{\"model\":\"test-model\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", 400},
		{"over the limit", `{"model":"test-model","messages":[{"role":"user","content":"` + strings.Repeat("a", 3<<20) + `"}]}`, 413},
	}
	for _, c := range cases {
		start := time.Now()
		resp, body := g.post(t, "/v1/chat/completions", c.body)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %.200s", c.name, resp.StatusCode, body)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v", c.name, d)
		}
	}
	if p.Count() != 0 {
		t.Fatalf("the provider saw %d requests", p.Count())
	}
}

// An upstream that sends a 1 MiB SSE event is passed through; one over the
// event limit ends the stream with an error event instead of growing memory.
func TestHugeUpstreamEvents(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{HugeEvent: 1 << 20, CompletionTokens: 3})
	_, sURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	read := func() string {
		req, _ := http.NewRequest("POST", g.base+"/v1/chat/completions", strings.NewReader(`{"model":"test-model","stream":true,"messages":[{"role":"user","content":"x"}]}`))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if out := read(); len(out) < 1<<20 || !strings.Contains(out, "[DONE]") {
		t.Fatalf("1 MiB event not passed through (%d bytes)", len(out))
	}
	p.Set(fakeprovider.Config{HugeEvent: 5 << 20, CompletionTokens: 3})
	if out := read(); len(out) > 1<<20 || !strings.Contains(out, "upstream_stream_error") {
		t.Fatalf("oversized event: %d bytes, %.200s", len(out), out)
	}
}

// Streams that end, are canceled, or break leave no goroutine behind.
func TestNoGoroutineLeak(t *testing.T) {
	_, pURL := fake(t, fakeprovider.Config{CompletionTokens: 50, TokensPerSecond: 100})
	_, sURL := fake(t, fakeprovider.Config{Fault: fakeprovider.ResetMidStream, FaultAfter: 2})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	c := g.client()
	before := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		s := c.Chat.Completions.NewStreaming(ctx, chatParams("test-model"))
		for j := 0; s.Next() && j < 3+i%5; j++ {
		}
		cancel()
		_ = s.Close()
	}
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after <= before+5 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines %d → %d\n%s", before, after, buf[:min(n, 4000)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
