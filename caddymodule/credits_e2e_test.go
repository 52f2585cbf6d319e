package caddymodule_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmgate/llmgate/fakeprovider"
	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/storetest"
)

// creditsConfig charges 1 micro-credit per output token (price 1.00 per 1M)
// and nothing for input, so a request's hold (max_tokens) equals its cost
// when the provider produces max_tokens tokens.
func creditsConfig(fakeURL, tierExtra string) string {
	return `{
	llm {
		storage sqlite {DB}
		no_builtin_catalog
		default_tier test
		hold_ttl 2s
		tier test {
			` + tierExtra + `
		}
		provider p {
			base_url ` + fakeURL + `
			api_key sk-platform-credits-0123456789
		}
		model m {
			serve p
			price 0 1.00
			context 100000
			max_output 50
			capabilities tools json streaming
		}
	}
}
http://127.0.0.1:{PORT} {
	log_append llm_cost {llm.cost_micros}
	route /v1/* {
		llm_auth {
			admin_key ` + testAdminKey + `
			jwt {
				secret ` + testJWTSecret + `
				tier_claim tier
			}
		}
		uri strip_prefix /v1
		llm_api
		llm_router
		llm_credits
		llm_upstream
	}
	log {
		output file {LOG}
	}
}`
}

func userToken(t *testing.T, user string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(testJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func addCredits(t *testing.T, g *gw, user string, micros int64, key string) {
	t.Helper()
	resp, body := g.post(t, "/v1/credits/add", fmt.Sprintf(`{"user":%q,"amount_micros":%d,"idempotency_key":%q}`, user, micros, key))
	if resp.StatusCode != 201 && resp.StatusCode != 200 {
		t.Fatalf("credits/add: %d %s", resp.StatusCode, body)
	}
}

func balance(t *testing.T, user string) storage.Balance {
	t.Helper()
	b, err := activeApp(t).Store().GetBalance(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ledgerSum(t *testing.T, user string) int64 {
	t.Helper()
	es, err := activeApp(t).Store().ListLedger(context.Background(), user, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var s int64
	for _, e := range es {
		s += e.AmountMicros
	}
	return s
}

// 200 concurrent requests against a balance for 100: exactly 100 served,
// on SQLite and on PostgreSQL.
func TestConcurrentSpendingNeverOverspends(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { concurrentSpending(t, "") })
	t.Run("postgres", func(t *testing.T) {
		dsn := storetest.PostgresURL(t)
		schema := randName("llmgate_e2e_")
		dropSchema(t, dsn, schema)
		concurrentSpending(t, "storage postgres \""+dsn+"\" {\n\t\t\tschema "+schema+"\n\t\t}")
	})
}

func concurrentSpending(t *testing.T, storageLine string) {
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 10})
	cf := creditsConfig(fURL, "")
	if storageLine != "" {
		cf = strings.Replace(cf, "storage sqlite {DB}", storageLine, 1)
	}
	g := startGateway(t, cf)
	addCredits(t, g, "u1", 1000, "seed")
	tok := userToken(t, "u1")
	var ok, refused, other atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("POST", g.base+"/v1/chat/completions", strings.NewReader(`{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"x"}]}`))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := httpClient.Do(req)
			if err != nil {
				other.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == 200:
				ok.Add(1)
			case resp.StatusCode == 402 && strings.Contains(string(b), "insufficient_quota"):
				refused.Add(1)
			default:
				other.Add(1)
				t.Logf("%d %s", resp.StatusCode, b)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 100 || refused.Load() != 100 || other.Load() != 0 {
		t.Fatalf("served %d, refused %d, other %d; want 100/100/0", ok.Load(), refused.Load(), other.Load())
	}
	b := balance(t, "u1")
	if b.BalanceMicros != 0 || b.HeldMicros != 0 || ledgerSum(t, "u1") != 0 {
		t.Fatalf("balance %+v, ledger %d", b, ledgerSum(t, "u1"))
	}
	us, _ := activeApp(t).Store().ListUsage(context.Background(), storage.UsageQuery{User: "u1", Limit: 1000})
	if len(us) != 100 {
		t.Fatalf("%d usage records", len(us))
	}
}

func TestPlainResponseCarriesCost(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 7, PromptTokens: 5})
	g := startGateway(t, creditsConfig(fURL, ""))
	addCredits(t, g, "u2", 100, "seed")
	c := openai.NewClient(option.WithBaseURL(g.base+"/v1/"), option.WithAPIKey(userToken(t, "u2")), option.WithMaxRetries(0))
	var raw *http.Response
	if _, err := c.Chat.Completions.New(context.Background(), chatParams("m"), option.WithResponseInto(&raw)); err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("X-LLM-Cost-Micros") != "7" || raw.Header.Get("X-LLM-Balance-Micros") != "93" {
		t.Fatalf("cost %q balance %q", raw.Header.Get("X-LLM-Cost-Micros"), raw.Header.Get("X-LLM-Balance-Micros"))
	}
	us, _ := activeApp(t).Store().ListUsage(context.Background(), storage.UsageQuery{User: "u2"})
	if len(us) != 1 || us[0].TokensIn != 5 || us[0].TokensOut != 7 || us[0].Estimated || us[0].CostMicros != 7 || us[0].Model != "m" || us[0].Provider != "p" {
		t.Fatalf("%+v", us)
	}
	if !strings.Contains(g.logs(), `"llm_cost":7`) {
		t.Fatal("cost placeholder not in the access log")
	}
	// Out of credit: 402 insufficient_quota, surfaced by the SDK, nothing called.
	if resp, _ := g.post(t, "/v1/credits/add", `{"user":"u2","amount_micros":-93,"idempotency_key":"drain"}`); resp.StatusCode != 400 {
		t.Fatal("a negative amount without a reason was accepted")
	}
	resp, body := g.post(t, "/v1/credits/add", `{"user":"u2","amount_micros":-93,"idempotency_key":"drain","reason":"test"}`)
	if resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	_, err := c.Chat.Completions.New(context.Background(), chatParams("m"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 402 || apiErr.Code != "insufficient_quota" {
		t.Fatalf("%v", err)
	}
}

// readStream sends a streamed request and returns the raw SSE text.
func readStream(t *testing.T, g *gw, tok, body string, stopAfter int) (string, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", g.base+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out strings.Builder
	sc := bufio.NewScanner(resp.Body)
	events := 0
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "data: ") {
			events++
			if stopAfter > 0 && events >= stopAfter {
				cancel()
				break
			}
		}
	}
	return out.String(), resp
}

func TestStreamsAreBilledExactly(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 6, PromptTokens: 9})
	g := startGateway(t, creditsConfig(fURL, ""))
	addCredits(t, g, "u3", 1000, "seed")
	tok := userToken(t, "u3")

	// Not asked for: the usage chunk is requested upstream but never reaches the client.
	text, resp := readStream(t, g, tok, `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`, 0)
	if strings.Contains(text, `"usage"`) {
		t.Fatalf("the extra usage chunk reached the client:\n%s", text)
	}
	// The stream ends ([DONE]) only after it is settled: the cost comment,
	// written after the settlement commits, comes first.
	cost, done := strings.Index(text, ": llm-cost 6 micros; balance 994 micros"), strings.Index(text, "data: [DONE]")
	if cost < 0 || done < cost {
		t.Fatalf("stream:\n%s", text)
	}
	if resp.Trailer.Get("X-LLM-Cost-Micros") != "6" {
		t.Fatalf("trailer %v", resp.Trailer)
	}
	// Asked for: it is passed on.
	text, _ = readStream(t, g, tok, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`, 0)
	if !strings.Contains(text, `"completion_tokens":6`) {
		t.Fatalf("usage chunk withheld:\n%s", text)
	}
	us, _ := activeApp(t).Store().ListUsage(context.Background(), storage.UsageQuery{User: "u3"})
	if len(us) != 2 || us[0].TokensOut != 6 || us[0].TokensIn != 9 || us[0].Estimated || balance(t, "u3").BalanceMicros != 988 {
		t.Fatalf("%+v %+v", us, balance(t, "u3"))
	}
}

func TestStreamWithoutUsageIsEstimated(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 5, OmitUsage: true})
	g := startGateway(t, creditsConfig(fURL, ""))
	addCredits(t, g, "u4", 1000, "seed")
	readStream(t, g, userToken(t, "u4"), `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`, 0)
	us, _ := activeApp(t).Store().ListUsage(context.Background(), storage.UsageQuery{User: "u4"})
	if len(us) != 1 || !us[0].Estimated || us[0].TokensOut != 5 || us[0].CostMicros != 5 {
		t.Fatalf("%+v", us)
	}
}

func TestDisconnectMidStreamBillsWhatStreamed(t *testing.T) {
	fp, fURL := fake(t, fakeprovider.Config{CompletionTokens: 40, TokensPerSecond: 40})
	g := startGateway(t, creditsConfig(fURL, ""))
	addCredits(t, g, "u5", 1000, "seed")
	readStream(t, g, userToken(t, "u5"), `{"model":"m","stream":true,"max_tokens":40,"messages":[{"role":"user","content":"x"}]}`, 3)
	deadline := time.Now().Add(5 * time.Second)
	var us []storage.Usage
	for time.Now().Before(deadline) {
		us, _ = activeApp(t).Store().ListUsage(context.Background(), storage.UsageQuery{User: "u5"})
		if len(us) == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(us) != 1 || !us[0].Estimated || us[0].TokensOut < 3 || us[0].TokensOut >= 40 || us[0].CostMicros != us[0].TokensOut {
		t.Fatalf("%+v", us)
	}
	for !fp.Received()[0].Canceled {
		if time.Now().After(deadline) {
			t.Fatal("upstream not canceled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The hold leaves right after the settlement commits (the client is
	// gone, so nobody waits on it): poll for it.
	b := balance(t, "u5")
	for b.HeldMicros != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		b = balance(t, "u5")
	}
	if b.HeldMicros != 0 || b.BalanceMicros != 1000-us[0].CostMicros || ledgerSum(t, "u5") != b.BalanceMicros {
		t.Fatalf("%+v", b)
	}
}

func TestUpstreamFailureChargesNothing(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{Fault: fakeprovider.Fail500})
	g := startGateway(t, creditsConfig(fURL, ""))
	addCredits(t, g, "u6", 1000, "seed")
	resp, _ := g.post(t, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, "Authorization", "Bearer "+userToken(t, "u6"))
	if resp.StatusCode != 503 {
		t.Fatal(resp.StatusCode)
	}
	if b := balance(t, "u6"); b.BalanceMicros != 1000 || b.HeldMicros != 0 {
		t.Fatalf("%+v", b)
	}
	if us, _ := activeApp(t).Store().ListUsage(context.Background(), storage.UsageQuery{User: "u6"}); len(us) != 0 {
		t.Fatal("usage recorded for a failed request")
	}
}

func TestStreamOverrunIsCutAtTheHold(t *testing.T) {
	// The provider ignores max_tokens: 20 tokens for a hold of 3.
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 20})
	g := startGateway(t, creditsConfig(fURL, ""))
	addCredits(t, g, "u7", 1000, "seed")
	text, _ := readStream(t, g, userToken(t, "u7"), `{"model":"m","stream":true,"max_tokens":3,"messages":[{"role":"user","content":"x"}]}`, 0)
	if !strings.Contains(text, "insufficient_quota") || strings.Contains(text, `"t3 "`) {
		t.Fatalf("overrun not cut:\n%s", text)
	}
	if b := balance(t, "u7"); b.BalanceMicros != 997 || b.HeldMicros != 0 {
		t.Fatalf("billed beyond the hold: %+v", b)
	}
}

func TestHoldSweeper(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, creditsConfig(fURL, ""))
	addCredits(t, g, "u8", 1000, "seed")
	// A hold left by an instance that died.
	s := activeApp(t).Store()
	if err := s.Reserve(context.Background(), storage.Hold{ID: "dead-1", User: "u8", AmountMicros: 400, ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for balance(t, "u8").HeldMicros != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sweeper did not release the expired hold")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCreditsAddIdempotentAndAdminOnly(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, creditsConfig(fURL, ""))
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := httpPostAuth(g.base+"/v1/credits/add", `{"user":"u9","amount_micros":5000000,"idempotency_key":"order-42"}`, testAdminKey)
			if err != nil || (resp != 200 && resp != 201) {
				t.Errorf("%d %v", resp, err)
			}
		}()
	}
	wg.Wait()
	if b := balance(t, "u9"); b.BalanceMicros != 5_000_000 {
		t.Fatalf("retries added %d", b.BalanceMicros)
	}
	resp, body := g.post(t, "/v1/credits/add", `{"user":"u9","amount_micros":1,"idempotency_key":"x"}`, "Authorization", "Bearer "+userToken(t, "u9"))
	if resp.StatusCode != 403 || errCode(t, body) != "admin_required" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = g.post(t, "/v1/credits/add", `{"user":"u9","amount_micros":7,"idempotency_key":"order-42"}`)
	if resp.StatusCode != 409 {
		t.Fatalf("reused key with another amount: %d %s", resp.StatusCode, body)
	}
	_, body = g.get(t, "/v1/credits", "Authorization", "Bearer "+userToken(t, "u9"))
	if !strings.Contains(body, `"balance_micros":5000000`) || !strings.Contains(body, `"tier":"test"`) {
		t.Fatalf("%s", body)
	}
}

func httpPostAuth(url, body, key string) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestAllowanceResetsAtThePeriodBoundary(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 2})
	g := startGateway(t, creditsConfig(fURL, "allowance 0.00001 per 24h"))
	app := activeApp(t)
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	app.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	tok := userToken(t, "u10")
	_, body := g.get(t, "/v1/credits", "Authorization", "Bearer "+tok)
	if !strings.Contains(body, `"balance_micros":10`) || !strings.Contains(body, `"allowance_micros":10`) {
		t.Fatalf("%s", body)
	}
	// Spend 2 of the 10 this period.
	if resp, body := g.post(t, "/v1/chat/completions", `{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"x"}]}`, "Authorization", "Bearer "+tok); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// Purchased credits do not expire with the period.
	addCredits(t, g, "u10", 100, "bought")
	mu.Lock()
	now = now.Add(24 * time.Hour)
	mu.Unlock()
	_, body = g.get(t, "/v1/credits", "Authorization", "Bearer "+tok)
	// 10 - 2 spent + 100 bought, the 8 unused expire, 10 granted anew: 110.
	if !strings.Contains(body, `"balance_micros":110`) || !strings.Contains(body, `"used_this_period_micros":0`) {
		t.Fatalf("after the boundary: %s", body)
	}
	if ledgerSum(t, "u10") != 110 {
		t.Fatal("ledger and balance disagree")
	}
}

func TestRateLimits(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 1})
	g := startGateway(t, creditsConfig(fURL, "rpm 3"))
	addCredits(t, g, "u11", 1000, "seed")
	tok := userToken(t, "u11")
	chat := `{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`
	for i := 0; i < 3; i++ {
		if resp, body := g.post(t, "/v1/chat/completions", chat, "Authorization", "Bearer "+tok); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	resp, body := g.post(t, "/v1/chat/completions", chat, "Authorization", "Bearer "+tok)
	if resp.StatusCode != 429 || errCode(t, body) != "rate_limit_exceeded" || resp.Header.Get("Retry-After") == "" ||
		resp.Header.Get("x-ratelimit-limit-requests") != "3" || resp.Header.Get("x-ratelimit-remaining-requests") != "0" {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	if b := balance(t, "u11"); b.HeldMicros != 0 || b.BalanceMicros != 997 {
		t.Fatalf("%+v", b)
	}
}

func TestUsageEndpoints(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 4})
	g := startGateway(t, creditsConfig(fURL, ""))
	addCredits(t, g, "u12", 1000, "seed")
	tok := userToken(t, "u12")
	for i := 0; i < 3; i++ {
		g.post(t, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, "Authorization", "Bearer "+tok)
	}
	_, body := g.get(t, "/v1/usage?limit=2", "Authorization", "Bearer "+tok)
	page := jsonBody(t, body)
	if len(page["data"].([]any)) != 2 || page["has_more"] != true || page["next_before"] == "" {
		t.Fatalf("%s", body)
	}
	_, body = g.get(t, "/v1/usage?limit=2&before="+page["next_before"].(string), "Authorization", "Bearer "+tok)
	if p2 := jsonBody(t, body); len(p2["data"].([]any)) != 1 || p2["has_more"] != false {
		t.Fatalf("%s", body)
	}
	_, body = g.get(t, "/v1/usage/summary", "Authorization", "Bearer "+tok)
	if !strings.Contains(body, `"requests":3`) || !strings.Contains(body, `"total_cost_micros":12`) {
		t.Fatalf("%s", body)
	}
	if resp, _ := g.get(t, "/v1/usage?user=someone-else", "Authorization", "Bearer "+tok); resp.StatusCode != 403 {
		t.Fatal("read another user's usage")
	}
	if _, body = g.get(t, "/v1/usage?user=u12"); !strings.Contains(body, `"user":"u12"`) {
		t.Fatalf("admin read: %s", body)
	}
}

// Lago down, then up: every settled request's event arrives, with the usage
// record's id as its transaction id; none is lost.
func TestLagoMeteringSurvivesAnOutage(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{CompletionTokens: 3})
	lago := &fakeprovider.Lago{Key: "lago-key-123"}
	lago.Down.Store(true)
	ls := httptest.NewServer(lago)
	defer ls.Close()
	cf := strings.Replace(creditsConfig(fURL, ""), "\t\thold_ttl 2s\n", "\t\thold_ttl 2s\n\t\tlago {\n\t\t\tapi_url "+ls.URL+"\n\t\t\tapi_key lago-key-123\n\t\t\tinterval 100ms\n\t\t}\n", 1)
	g := startGateway(t, cf)
	addCredits(t, g, "u13", 1000, "seed")
	tok := userToken(t, "u13")
	for i := 0; i < 5; i++ {
		if resp, body := g.post(t, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, "Authorization", "Bearer "+tok); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	time.Sleep(400 * time.Millisecond)
	if calls, _ := lago.Calls(); calls == 0 {
		t.Fatal("no delivery was attempted while Lago was down")
	}
	if n, _ := activeApp(t).Store().OutboxDepth(context.Background(), "lago"); n != 5 {
		t.Fatalf("outbox depth %d while Lago is down", n)
	}
	lago.Down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for len(lago.Events()) < 5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	ev := lago.Events()
	us, _ := activeApp(t).Store().ListUsage(context.Background(), storage.UsageQuery{User: "u13"})
	if len(ev) != 5 || len(us) != 5 {
		t.Fatalf("%d events for %d usage records", len(ev), len(us))
	}
	for _, u := range us {
		e, ok := ev[u.RequestID]
		if !ok || e.ExternalSubscriptionID != "u13" || e.Code != "llm_usage" || e.Properties["cost_micros"] != float64(3) || e.Properties["model"] != "m" {
			t.Fatalf("event for %s: %+v", u.RequestID, e)
		}
	}
	if _, rejected := lago.Calls(); rejected != 0 {
		t.Fatalf("%d malformed batches", rejected)
	}
	deadline = time.Now().Add(3 * time.Second)
	for {
		n, _ := activeApp(t).Store().OutboxDepth(context.Background(), "lago")
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox still holds %d", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
