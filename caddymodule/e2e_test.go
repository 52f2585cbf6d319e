package caddymodule_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmgate/llmgate/fakeprovider"
)

func TestChatPlainAndStreamedThroughSDK(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{CompletionTokens: 5, PromptTokens: 11})
	_, sURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	c := g.client()
	ctx := context.Background()

	var raw *http.Response
	resp, err := c.Chat.Completions.New(ctx, chatParams("test-model"), option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Message.Content; got != "t0 t1 t2 t3 t4 " {
		t.Fatalf("content %q", got)
	}
	if resp.Usage.PromptTokens != 11 || resp.Usage.CompletionTokens != 5 {
		t.Fatalf("usage %+v", resp.Usage)
	}
	if raw.Header.Get("X-LLM-Provider") != "primary" || raw.Header.Get("X-LLM-Model") != "test-model" || raw.Header.Get("X-LLM-Route") != "explicit" {
		t.Fatalf("headers %v", raw.Header)
	}
	recv := p.Received()
	if len(recv) != 1 || recv[0].Model != "upstream-primary" {
		t.Fatalf("upstream saw %+v", recv)
	}
	// The platform key goes upstream; the client's own credential does not.
	if got := recv[0].Header.Get("Authorization"); got != "Bearer sk-platform-primary-0123456789" {
		t.Fatalf("upstream Authorization %q", got)
	}
	for k, v := range recv[0].Header {
		if strings.Contains(strings.Join(v, ","), testAdminKey) {
			t.Fatalf("client credential forwarded in %s", k)
		}
	}

	// Streamed, through the alias, with the usage chunk the client asked for.
	params := chatParams("tm")
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var text strings.Builder
	var usage int64
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
		if ch.Usage.TotalTokens > 0 {
			usage = ch.Usage.CompletionTokens
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "t0 t1 t2 t3 t4 " || usage != 5 {
		t.Fatalf("stream %q usage %d", text.String(), usage)
	}
	if p.Received()[1].Model != "upstream-primary" {
		t.Fatal("alias not rewritten to the upstream name")
	}

	// Completions and embeddings take the same path.
	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: "test-model", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("hi")}})
	if err != nil || comp.Choices[0].Text != "t0 t1 t2 t3 t4 " {
		t.Fatalf("completions: %v %+v", err, comp)
	}
	emb, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "test-embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	if err != nil || len(emb.Data) != 1 {
		t.Fatalf("embeddings: %v", err)
	}
	if strings.Contains(g.logs(), "sk-platform") || strings.Contains(g.logs(), testAdminKey) {
		t.Fatal("a key reached the logs")
	}
}

func TestFirstChunkArrivesBeforeUpstreamFinishes(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{CompletionTokens: 10, TokensPerSecond: 10})
	_, sURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	c := g.client()
	start := time.Now()
	stream := c.Chat.Completions.NewStreaming(context.Background(), chatParams("test-model"))
	if !stream.Next() {
		t.Fatalf("no chunk: %v", stream.Err())
	}
	first := time.Since(start)
	if p.Received()[0].Completed {
		t.Fatal("upstream had already finished when the first chunk arrived: the stream was buffered")
	}
	n := 1
	for stream.Next() {
		n++
	}
	if stream.Err() != nil || n < 10 {
		t.Fatalf("%d chunks, %v", n, stream.Err())
	}
	t.Logf("first chunk after %v, whole stream %v", first, time.Since(start))
}

func TestFailover(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault fakeprovider.Config
	}{
		{"500", fakeprovider.Config{Fault: fakeprovider.Fail500}},
		{"429", fakeprovider.Config{Fault: fakeprovider.Fail429, RetryAfter: 30}},
		{"hang", fakeprovider.Config{Fault: fakeprovider.Hang}},
		{"401 platform key refused", fakeprovider.Config{Fault: fakeprovider.Fail401}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, pURL := fake(t, tc.fault)
			s, sURL := fake(t, fakeprovider.Config{})
			g := startGateway(t, twoProviders(pURL, sURL, ""))
			var raw *http.Response
			resp, err := g.client().Chat.Completions.New(context.Background(), chatParams("test-model"), option.WithResponseInto(&raw))
			if err != nil {
				t.Fatal(err)
			}
			if raw.Header.Get("X-LLM-Provider") != "secondary" || resp.Choices[0].Message.Content == "" {
				t.Fatalf("served by %q", raw.Header.Get("X-LLM-Provider"))
			}
			if p.Count() != 1 || s.Count() != 1 || s.Received()[0].Model != "upstream-secondary" {
				t.Fatalf("primary %d secondary %d", p.Count(), s.Count())
			}
			if strings.Contains(g.logs(), "sk-platform") {
				t.Fatal("platform key in logs")
			}
			if tc.fault.Fault == fakeprovider.Fail429 {
				// The 429's Retry-After keeps the primary out of rotation.
				if _, err := g.client().Chat.Completions.New(context.Background(), chatParams("test-model")); err != nil {
					t.Fatal(err)
				}
				if p.Count() != 1 {
					t.Fatal("primary called again within its Retry-After")
				}
			}
		})
	}
}

func TestNoFailoverAfterFirstByte(t *testing.T) {
	_, pURL := fake(t, fakeprovider.Config{Fault: fakeprovider.ResetMidStream, FaultAfter: 2, CompletionTokens: 10})
	s, sURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	stream := g.client().Chat.Completions.NewStreaming(context.Background(), chatParams("test-model"))
	var text strings.Builder
	for stream.Next() {
		if ch := stream.Current(); len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if text.String() != "t0 t1 " {
		t.Fatalf("client got %q", text.String())
	}
	if stream.Err() == nil {
		t.Fatal("a broken stream ended without an error for the client")
	}
	if s.Count() != 0 {
		t.Fatal("failed over after the first byte")
	}
}

func TestBreakerOpensAndRecoversThroughHalfOpen(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{Fault: fakeprovider.Fail500})
	s, sURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	c := g.client()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := c.Chat.Completions.New(ctx, chatParams("test-model")); err != nil {
			t.Fatal(err)
		}
	}
	if p.Count() != 2 {
		t.Fatalf("primary saw %d", p.Count())
	}
	// Open: the primary is skipped entirely.
	if _, err := c.Chat.Completions.New(ctx, chatParams("test-model")); err != nil {
		t.Fatal(err)
	}
	if p.Count() != 2 || s.Count() != 3 {
		t.Fatalf("breaker not open: primary %d secondary %d", p.Count(), s.Count())
	}
	_, health := g.get(t, "/v1/providers/health")
	if !strings.Contains(health, `"breaker":"open"`) {
		t.Fatalf("health %s", health)
	}
	// After the cooldown one trial goes to the primary; it is healthy again.
	p.Set(fakeprovider.Config{})
	time.Sleep(350 * time.Millisecond)
	var raw *http.Response
	if _, err := c.Chat.Completions.New(ctx, chatParams("test-model"), option.WithResponseInto(&raw)); err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("X-LLM-Provider") != "primary" || p.Count() != 3 {
		t.Fatalf("half-open trial not sent: %s, primary %d", raw.Header.Get("X-LLM-Provider"), p.Count())
	}
	_, health = g.get(t, "/v1/providers/health")
	if !strings.Contains(health, `"breaker":"closed"`) || strings.Contains(health, `"breaker":"open"`) {
		t.Fatalf("not closed after a good trial: %s", health)
	}
}

func TestAllDownIs503WithRetryAfter(t *testing.T) {
	_, pURL := fake(t, fakeprovider.Config{Fault: fakeprovider.Fail500})
	_, sURL := fake(t, fakeprovider.Config{Fault: fakeprovider.Fail500})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	var raw *http.Response
	_, err := g.client().Chat.Completions.New(context.Background(), chatParams("test-model"), option.WithResponseInto(&raw))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an API error, got %v", err)
	}
	if apiErr.StatusCode != 503 || !strings.Contains(apiErr.Message, "every provider for model test-model failed") ||
		!strings.Contains(apiErr.Message, "primary: HTTP 500") || apiErr.Code != "upstream_unavailable" {
		t.Fatalf("%d %q %q", apiErr.StatusCode, apiErr.Message, apiErr.Code)
	}
	if raw.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	// Forced down by the operator: 503 without calling anyone.
	resp, body := g.post(t, "/v1/providers/primary/override", `{"state":"down"}`)
	if resp.StatusCode != 200 {
		t.Fatal(body)
	}
	g.post(t, "/v1/providers/secondary/override", `{"state":"down"}`)
	resp, body = g.post(t, "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 503 || !strings.Contains(body, "no healthy provider") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestOverrideMovesTraffic(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{})
	s, sURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	if resp, body := g.post(t, "/v1/providers/primary/override", `{"state":"down"}`); resp.StatusCode != 200 {
		t.Fatal(body)
	}
	g.post(t, "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"x"}]}`)
	if p.Count() != 0 || s.Count() != 1 {
		t.Fatal("override down ignored")
	}
	g.post(t, "/v1/providers/primary/override", `{"state":"auto"}`)
	g.post(t, "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"x"}]}`)
	if p.Count() != 1 {
		t.Fatal("override auto ignored")
	}
	for _, bad := range []struct{ path, body string }{
		{"/v1/providers/primary/override", `{"state":"sideways"}`},
		{"/v1/providers/primary/override", `not json`},
		{"/v1/providers/nobody/override", `{"state":"up"}`},
		{"/v1/providers/primary/override", `{"state":"up","deployment":"http://elsewhere"}`},
	} {
		resp, body := g.post(t, bad.path, bad.body)
		if resp.StatusCode != 400 && resp.StatusCode != 404 || !strings.Contains(body, `"error"`) {
			t.Fatalf("%s %s: %d %s", bad.path, bad.body, resp.StatusCode, body)
		}
	}
}

func TestClientCancelReachesUpstream(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{CompletionTokens: 100, TokensPerSecond: 20})
	_, sURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	ctx, cancel := context.WithCancel(context.Background())
	stream := g.client().Chat.Completions.NewStreaming(ctx, chatParams("test-model"))
	if !stream.Next() {
		t.Fatal(stream.Err())
	}
	cancel()
	_ = stream.Close()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if r := p.Received(); len(r) == 1 && r[0].Canceled {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("upstream request not canceled: %+v", p.Received())
}

func TestBadRequests(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{})
	_, sURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, twoProviders(pURL, sURL, ""))
	msg := `"messages":[{"role":"user","content":"x"}]`
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/chat/completions", `not json`, 400, "invalid_request_error"},
		{"POST", "/v1/chat/completions", `{` + msg + `}`, 400, "invalid_request_error"},
		{"POST", "/v1/chat/completions", `{"model":"test-model"}`, 400, "invalid_request_error"},
		{"POST", "/v1/completions", `{"model":"test-model"}`, 400, "invalid_request_error"},
		{"POST", "/v1/chat/completions", `{"model":"gpt-nonexistent",` + msg + `}`, 404, "model_not_found"},
		{"POST", "/v1/chat/completions", `{"model":"test-embed",` + msg + `}`, 400, "model_not_capable"},
		{"POST", "/v1/embeddings", `{"model":"test-model","input":"x"}`, 400, "model_not_capable"},
		{"POST", "/v1/chat/completions", `{"model":"test-model","messages":[{"role":"user","content":"` + strings.Repeat("a", 70_000) + `"}]}`, 413, "request_too_large"},
		{"GET", "/v1/chat/completions", ``, 405, "method_not_allowed"},
		{"POST", "/v1/nope", `{}`, 404, "unknown_endpoint"},
		{"GET", "/elsewhere", ``, 404, "not_found"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, g.base+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+testAdminKey)
		resp, body := do(t, req)
		var e struct {
			Error struct{ Message, Type, Code string }
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || resp.StatusCode != c.status || e.Error.Code != c.code || e.Error.Message == "" {
			t.Errorf("%s %s %.40q: %d %s", c.method, c.path, c.body, resp.StatusCode, body)
		}
	}
	if p.Count() != 0 {
		t.Fatalf("bad requests reached the provider %d times", p.Count())
	}
	// The SDK surfaces a 404 model as an API error with the message.
	_, err := g.client().Chat.Completions.New(context.Background(), chatParams("gpt-nonexistent"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || !strings.Contains(apiErr.Message, "gpt-nonexistent") {
		t.Fatalf("%v", err)
	}
}

func TestModelsAndProviders(t *testing.T) {
	_, pURL := fake(t, fakeprovider.Config{})
	_, sURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, twoProviders(pURL+"?token=sk-url-secret", sURL, ""))
	page, err := g.client().Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "test-model,test-embed" {
		t.Fatalf("models %v", ids)
	}
	_, body := g.get(t, "/v1/models")
	if !strings.Contains(body, `"input_micros_per_mtok":1000000`) || !strings.Contains(body, `"context_window":8192`) {
		t.Fatalf("models body lacks price/context: %s", body)
	}
	m, err := g.client().Models.Get(context.Background(), "tm")
	if err != nil || m.ID != "test-model" {
		t.Fatalf("get model: %v %+v", err, m)
	}
	_, body = g.get(t, "/v1/providers")
	if strings.Contains(body, "sk-") {
		t.Fatalf("a secret in /providers: %s", body)
	}
	if !strings.Contains(body, `"id":"primary"`) || !strings.Contains(body, `"has_key":true`) {
		t.Fatalf("providers %s", body)
	}
	_, body = g.get(t, "/v1/providers/health")
	if strings.Contains(body, "sk-") || !strings.Contains(body, `"deployment"`) {
		t.Fatalf("health %s", body)
	}
}

func TestUnauthenticatedIsRefusedUnlessAllowed(t *testing.T) {
	_, pURL := fake(t, fakeprovider.Config{})
	cf := `{
	llm {
		provider p {
			base_url ` + pURL + `
		}
	}
}
http://127.0.0.1:{PORT} {
	handle_path /v1/* {
		llm_api
		llm_router
		llm_upstream
	}
}`
	g := startGateway(t, cf)
	for _, path := range []string{"/v1/models", "/v1/chat/completions"} {
		resp, body := g.post(t, path, `{}`, "Authorization", "")
		if resp.StatusCode != 401 || !strings.Contains(body, "requires authentication") || resp.Header.Get("WWW-Authenticate") == "" {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
}

func TestSkippedProvidersAndProbes(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{})
	cf := `{
	llm {
		provider good {
			base_url ` + pURL + `
			probe 50ms
		}
		provider nokey {
			base_url ` + pURL + `
			api_key {env.LLMGATE_TEST_SURELY_UNSET}
		}
		provider nourl {
			base_url
		}
	}
}
http://127.0.0.1:{PORT} {
	handle_path /v1/* {
		llm_api {
			allow_unauthenticated
		}
	}
}`
	g := startGateway(t, cf)
	_, body := g.get(t, "/v1/providers")
	if !strings.Contains(body, `"skipped_reason":"api_key is empty"`) || !strings.Contains(body, `"skipped_reason":"no base_url or deployment is set"`) {
		t.Fatalf("%s", body)
	}
	if n := strings.Count(g.logs(), `"provider skipped"`); n != 2 {
		t.Fatalf("%d skip log lines", n)
	}
	deadline := time.Now().Add(3 * time.Second)
	for p.Count() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if p.Count() < 2 || p.Received()[0].Path != "/v1/models" {
		t.Fatalf("probes: %d", p.Count())
	}
	_, body = g.get(t, "/v1/providers/health")
	if !strings.Contains(body, `"last_probe_ok":true`) {
		t.Fatalf("%s", body)
	}
}

func TestMetricsAndPlaceholders(t *testing.T) {
	_, pURL := fake(t, fakeprovider.Config{Fault: fakeprovider.Fail500})
	_, sURL := fake(t, fakeprovider.Config{})
	cf := strings.Replace(twoProviders(pURL, sURL, ""), "\thandle_path /v1/* {", "\tlog_append llm_provider {llm.provider}\n\tlog_append llm_failovers {llm.failovers}\n\tlog_append llm_upstream_model {llm.model}\n\thandle /metrics {\n\t\tmetrics\n\t}\n\thandle_path /v1/* {", 1)
	g := startGateway(t, cf)
	if _, err := g.client().Chat.Completions.New(context.Background(), chatParams("test-model")); err != nil {
		t.Fatal(err)
	}
	_, body := g.get(t, "/metrics")
	for _, want := range []string{
		`llmgate_requests_total{model="test-model",provider="secondary",status="200"} 1`,
		`llmgate_failovers_total{provider="primary",reason="5xx"} 1`,
		`llmgate_upstream_ttfb_seconds_count{provider="secondary"} 1`,
		`llmgate_breaker_state{deployment="` + pURL + `",provider="primary"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "sk-platform") {
		t.Fatal("a key in metrics")
	}
	logs := g.logs()
	for _, want := range []string{`"llm_provider":"secondary"`, `"llm_failovers":1`, `"llm_upstream_model":"upstream-secondary"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %s", want)
		}
	}
}
