package caddymodule_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/llmgate/llmgate/fakeprovider"
	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/vault"
)

const (
	testRingKey = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=" // the Fernet spec's key, so the golden tokens decrypt
	aliceKey    = "sk-alice-own-provider-key-9876"
)

func byokConfig(pURL, qURL, policy, ring string) string {
	return `{
	llm {
		storage sqlite {DB}
		no_builtin_catalog
		default_tier t
		byok {
			key_ring ` + ring + `
		}
		tier t {
			byok ` + policy + ` fee 0.000005
		}
		provider p {
			base_url ` + pURL + `
			api_key sk-platform-p-0123456789
		}
		provider q {
			base_url ` + qURL + `
			api_key sk-platform-q-0123456789
		}
		model m {
			serve p
			price 1 1
		}
		model only-q {
			serve q
			price 1 1
		}
	}
}
http://127.0.0.1:{PORT} {
	route /v1/* {
		llm_auth {
			admin_key ` + testAdminKey + `
			jwt {
				secret ` + testJWTSecret + `
			}
		}
		uri strip_prefix /v1
		llm_api
		llm_byok
		llm_router
		llm_credits
		llm_upstream
	}
	log {
		output file {LOG}
	}
}`
}

func as(user string, t *testing.T) []string {
	return []string{"Authorization", "Bearer " + userToken(t, user)}
}

func TestBYOKEndToEnd(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{CompletionTokens: 3})
	q, qURL := fake(t, fakeprovider.Config{CompletionTokens: 3})
	g := startGateway(t, byokConfig(pURL, qURL, "prefer", testRingKey))
	addCredits(t, g, "alice", 1_000_000, "a")
	addCredits(t, g, "bob", 1_000_000, "b")

	resp, body := g.post(t, "/v1/byok/keys", `{"provider":"p","api_key":"`+aliceKey+`","name":"mine"}`, as("alice", t)...)
	if resp.StatusCode != 201 || strings.Contains(body, aliceKey) || !strings.Contains(body, `"masked_key":"sk-…9876"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var created struct{ ID string }
	_ = json.Unmarshal([]byte(body), &created)
	if resp, body := g.post(t, "/v1/byok/keys", `{"provider":"nope","api_key":"sk-whatever-123"}`, as("alice", t)...); resp.StatusCode != 400 || errCode(t, body) != "unknown_provider" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}

	// Alice's requests to p carry her key, cost only the fee, and are recorded as BYOK.
	chat := func(user, model string) (*http.Response, string) {
		return g.post(t, "/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"x"}]}`, as(user, t)...)
	}
	if resp, body := chat("alice", "m"); resp.StatusCode != 200 || resp.Header.Get("X-LLM-Cost-Micros") != "5" {
		t.Fatalf("%d %s %v", resp.StatusCode, body, resp.Header)
	}
	if got := p.Received()[0].Header.Get("Authorization"); got != "Bearer "+aliceKey {
		t.Fatalf("upstream saw %q", got)
	}
	us, _ := activeApp(t).Store().ListUsage(context.Background(), storage.UsageQuery{User: "alice"})
	if len(us) != 1 || !us[0].BYOK || us[0].CostMicros != 5 {
		t.Fatalf("%+v", us)
	}
	// Bob has no key: the platform's. Alice on q (no key of hers): the platform's, never hers.
	chat("bob", "m")
	chat("alice", "only-q")
	if got := p.Received()[1].Header.Get("Authorization"); got != "Bearer sk-platform-p-0123456789" {
		t.Fatalf("bob's request used %q", got)
	}
	for _, r := range q.Received() {
		if strings.Contains(r.Header.Get("Authorization"), aliceKey) {
			t.Fatal("a key went to another provider")
		}
	}

	// BOLA: bob cannot see, change or delete alice's key.
	_, body = g.get(t, "/v1/byok/keys", as("bob", t)...)
	if strings.Contains(body, created.ID) {
		t.Fatal("bob lists alice's key")
	}
	for _, m := range []string{"DELETE", "PATCH"} {
		req, _ := http.NewRequest(m, g.base+"/v1/byok/keys/"+created.ID, strings.NewReader(`{"name":"pwned"}`))
		req.Header.Set("Authorization", "Bearer "+userToken(t, "bob"))
		if resp, _ := do(t, req); resp.StatusCode != 404 {
			t.Fatalf("bob %s alice's key: %d", m, resp.StatusCode)
		}
	}

	// The provider refuses alice's key: marked invalid for her, and the
	// request falls back to the platform key (policy prefer).
	p.Set(fakeprovider.Config{CompletionTokens: 3, Key: "sk-platform-p-0123456789"})
	if resp, body := chat("alice", "m"); resp.StatusCode != 200 {
		t.Fatalf("no fallback: %d %s", resp.StatusCode, body)
	}
	_, body = g.get(t, "/v1/byok/keys", as("alice", t)...)
	if !strings.Contains(body, `"status":"invalid"`) {
		t.Fatalf("key not marked invalid: %s", body)
	}
	if _, health := g.get(t, "/v1/providers/health"); !strings.Contains(health, `"breaker":"closed"`) || strings.Contains(health, `"failures":1`) {
		t.Fatalf("a refused user key counted against the provider: %s", health)
	}

	// Rotation in place: a new key, active again, used at once.
	req, _ := http.NewRequest("PATCH", g.base+"/v1/byok/keys/"+created.ID, strings.NewReader(`{"api_key":"sk-alice-rotated-key-5555"}`))
	req.Header.Set("Authorization", "Bearer "+userToken(t, "alice"))
	if resp, body := do(t, req); resp.StatusCode != 200 || !strings.Contains(body, `"status":"active"`) || !strings.Contains(body, "5555") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	p.Set(fakeprovider.Config{CompletionTokens: 3})
	chat("alice", "m")
	rs := p.Received()
	if got := rs[len(rs)-1].Header.Get("Authorization"); got != "Bearer sk-alice-rotated-key-5555" {
		t.Fatalf("after rotation upstream saw %q", got)
	}
	req, _ = http.NewRequest("DELETE", g.base+"/v1/byok/keys/"+created.ID, nil)
	req.Header.Set("Authorization", "Bearer "+userToken(t, "alice"))
	if resp, _ := do(t, req); resp.StatusCode != 204 {
		t.Fatal(resp.StatusCode)
	}

	logs := g.logs()
	for _, secret := range []string{aliceKey, "sk-alice-rotated-key-5555", testRingKey} {
		if strings.Contains(logs, secret) {
			t.Fatal("a key reached the logs")
		}
	}
}

func TestBYOKRequireAndLegacyRows(t *testing.T) {
	p, pURL := fake(t, fakeprovider.Config{CompletionTokens: 3})
	_, qURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, byokConfig(pURL, qURL, "require", testRingKey))
	addCredits(t, g, "carol", 100, "c")
	// Without a key of her own, a require tier refuses.
	resp, body := g.post(t, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, as("carol", t)...)
	if resp.StatusCode != 403 || errCode(t, body) != "byok_required" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// A row imported from Ops-Center (Fernet, made by Python's cryptography)
	// works and is re-encrypted in the new format on first use.
	var golden struct {
		Rows []struct{ Owner, Provider, Plaintext, Token string }
	}
	b, _ := os.ReadFile("../vault/testdata/fernet_golden.json")
	_ = json.Unmarshal(b, &golden)
	row := golden.Rows[0]
	s := activeApp(t).Store()
	if err := s.PutBYOKKey(context.Background(), storage.BYOKKey{ID: "legacy-1", Owner: "carol", Provider: "p", Ciphertext: row.Token, KeyID: vault.LegacyKeyID}); err != nil {
		t.Fatal(err)
	}
	activeApp(t).ForgetUserKeys(context.Background(), "carol") // written behind the gateway's back
	resp, body = g.post(t, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, as("carol", t)...)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if got := p.Received()[0].Header.Get("Authorization"); got != "Bearer "+row.Plaintext {
		t.Fatalf("legacy key not used: %q", got)
	}
	ks, _ := s.ListBYOKKeys(context.Background(), "carol")
	if len(ks) != 1 || ks[0].KeyID == vault.LegacyKeyID || !strings.HasPrefix(ks[0].Ciphertext, "v1:") {
		t.Fatalf("not re-encrypted: %+v", ks)
	}
	// verify: the key is tried on the provider and the answer stored.
	p.Set(fakeprovider.Config{Key: "only-this-key-works"})
	resp, body = g.post(t, "/v1/byok/keys", `{"provider":"p","api_key":"sk-wrong-key-0000","verify":true}`, as("erin", t)...)
	if resp.StatusCode != 201 || !strings.Contains(body, `"status":"invalid"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = g.post(t, "/v1/byok/keys", `{"provider":"p","api_key":"only-this-key-works","verify":true}`, as("erin", t)...)
	if resp.StatusCode != 201 || !strings.Contains(body, `"status":"active"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	p.Set(fakeprovider.Config{CompletionTokens: 3})
	// An expired key is not used.
	past := time.Now().Add(-time.Hour)
	ks[0].ExpiresAt = &past
	_ = s.PutBYOKKey(context.Background(), ks[0])
	activeApp(t).ForgetUserKeys(context.Background(), "carol")
	if resp, _ := g.post(t, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, as("carol", t)...); resp.StatusCode != 403 {
		t.Fatalf("expired key used: %d", resp.StatusCode)
	}
}

func TestBYOKOffWithoutKeyRing(t *testing.T) {
	_, pURL := fake(t, fakeprovider.Config{})
	_, qURL := fake(t, fakeprovider.Config{})
	t.Setenv("BYOK_ENCRYPTION_KEY", "")
	g := startGateway(t, strings.Replace(byokConfig(pURL, qURL, "prefer", ""), "\t\tbyok {\n\t\t\tkey_ring \n\t\t}\n", "", 1))
	resp, body := g.post(t, "/v1/byok/keys", `{"provider":"p","api_key":"sk-whatever-1234"}`, as("dave", t)...)
	if resp.StatusCode != 503 || errCode(t, body) != "byok_disabled" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if !strings.Contains(g.logs(), "BYOK is off") {
		t.Fatal("no warning at start")
	}
}
