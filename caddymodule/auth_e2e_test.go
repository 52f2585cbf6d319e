package caddymodule_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmgate/llmgate/fakeprovider"
)

const testJWTSecret = "e2e-secret-0123456789abcdef0123456789"

func authConfig(fakeURL string) string {
	return `{
	llm {
		storage sqlite {DB}
		no_builtin_catalog
		provider p {
			base_url ` + fakeURL + `
			api_key sk-platform-e2e-0123456789
		}
		model m {
			serve p
		}
	}
}
http://127.0.0.1:{PORT} {
	log_append llm_user {llm.user}
	log_append llm_key_id {llm.key_id}
	log_append llm_tier {llm.tier}
	# llm_auth runs before the prefix is stripped, so even Caddy's own
	# DEBUG logs of the rewrite never see the caller's x-api-key.
	route /v1/* {
		llm_auth {
			admin_key ` + testAdminKey + `
			jwt {
				secret ` + testJWTSecret + `
				issuer https://idp.example
				audience llmgate
				roles_claim realm_access.roles
				tier_claim tier
			}
		}
		uri strip_prefix /v1
		llm_api {
			max_keys 2
		}
		llm_router
		llm_upstream
	}
	log {
		output file {LOG}
		format filter {
			request>headers>X-Api-Key delete
		}
	}
}`
}

func jsonBody(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
	return m
}

func errCode(t *testing.T, s string) string {
	t.Helper()
	e, _ := jsonBody(t, s)["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func TestAPIKeysEndToEnd(t *testing.T) {
	fp, fURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, authConfig(fURL))
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }

	resp, body := g.post(t, "/v1/keys", `{"user":"alice","name":"laptop"}`)
	if resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	alice := jsonBody(t, body)["key"].(string)
	aliceID := jsonBody(t, body)["id"].(string)
	if !strings.HasPrefix(alice, "sk-llm-") || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("%s", body)
	}
	_, body = g.post(t, "/v1/keys", `{"user":"bob"}`)
	bobID := jsonBody(t, body)["id"].(string)

	// The OpenAI SDK with alice's key, and the Anthropic-style header.
	c := openai.NewClient(option.WithBaseURL(g.base+"/v1/"), option.WithAPIKey(alice), option.WithMaxRetries(0))
	if _, err := c.Chat.Completions.New(context.Background(), chatParams("m")); err != nil {
		t.Fatal(err)
	}
	resp, body = g.post(t, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, "Authorization", "", "x-api-key", alice)
	if resp.StatusCode != 200 {
		t.Fatalf("x-api-key: %d %s", resp.StatusCode, body)
	}
	for _, r := range fp.Received() {
		for k, v := range r.Header {
			if strings.Contains(strings.Join(v, ""), alice) {
				t.Fatalf("the caller's key went upstream in %s", k)
			}
		}
	}

	// Alice sees only her keys, never a secret.
	_, body = g.get(t, "/v1/keys", bearer(alice)...)
	if strings.Contains(body, alice) || strings.Contains(body, `"key":`) || strings.Contains(body, bobID) || !strings.Contains(body, aliceID) {
		t.Fatalf("alice's list: %s", body)
	}
	for _, c := range []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"DELETE", "/v1/keys/" + bobID, "", 404, "key_not_found"},
		{"GET", "/v1/keys?user=bob", "", 403, "admin_required"},
		{"POST", "/v1/providers/p/override", `{"state":"down"}`, 403, "admin_required"},
		{"POST", "/v1/keys", `{"scopes":["admin"]}`, 403, "admin_required"},
		{"POST", "/v1/keys", `{"user":"bob"}`, 403, "admin_required"},
		{"POST", "/v1/keys", `{"name":"second"}`, 201, ""},
		{"POST", "/v1/keys", `{"name":"third"}`, 403, "key_limit_reached"},
	} {
		req, _ := http.NewRequest(c.method, g.base+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, body := do(t, req)
		if resp.StatusCode != c.status || (c.code != "" && errCode(t, body) != c.code) {
			t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, body)
		}
	}
	// The admin lists anyone's; bob's key is still there.
	if _, body = g.get(t, "/v1/keys?user=bob"); !strings.Contains(body, bobID) {
		t.Fatalf("admin list: %s", body)
	}

	// Revoking her key stops it at once.
	req, _ := http.NewRequest("DELETE", g.base+"/v1/keys/"+aliceID, nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	if resp, body := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	_, err := c.Chat.Completions.New(context.Background(), chatParams("m"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
		t.Fatalf("revoked key: %v", err)
	}

	logs := g.logs()
	for _, secret := range []string{alice, testAdminKey, "sk-platform-e2e"} {
		if i := strings.Index(logs, secret); i >= 0 {
			t.Fatalf("a secret reached the logs: %s", logs[max(0, i-600):i+20])
		}
	}
	if !strings.Contains(logs, `"llm_user":"alice"`) || !strings.Contains(logs, `"llm_key_id":"`+aliceID+`"`) || !strings.Contains(logs, `"llm_tier":"trial"`) {
		t.Fatal("identity placeholders missing from the access log")
	}
}

func token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	base := jwt.MapClaims{"iss": "https://idp.example", "aud": "llmgate", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		base[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, base).SignedString([]byte(testJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJWTEndToEnd(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, authConfig(fURL))
	admin := token(t, jwt.MapClaims{"sub": "carol", "tier": "enterprise", "realm_access": map[string]any{"roles": []any{"admin"}}})
	user := token(t, jwt.MapClaims{"sub": "dave"})
	expired := token(t, jwt.MapClaims{"sub": "dave", "exp": time.Now().Add(-time.Hour).Unix()})
	wrongAud := token(t, jwt.MapClaims{"sub": "dave", "aud": "elsewhere"})

	if resp, body := g.post(t, "/v1/providers/p/override", `{"state":"auto"}`, "Authorization", "Bearer "+admin); resp.StatusCode != 200 {
		t.Fatalf("admin token: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.post(t, "/v1/providers/p/override", `{"state":"auto"}`, "Authorization", "Bearer "+user); resp.StatusCode != 403 {
		t.Fatalf("user token on admin endpoint: %d %s", resp.StatusCode, body)
	}
	chat := `{"model":"m","messages":[{"role":"user","content":"x"}]}`
	if resp, body := g.post(t, "/v1/chat/completions", chat, "Authorization", "Bearer "+user); resp.StatusCode != 200 {
		t.Fatalf("user token: %d %s", resp.StatusCode, body)
	}
	for _, c := range []struct {
		hdr  []string
		code string
	}{
		{[]string{"Authorization", "Bearer " + expired}, "token_expired"},
		{[]string{"Authorization", "Bearer " + wrongAud}, "invalid_token"},
		{[]string{"Authorization", "Bearer not-a-key"}, "invalid_api_key"},
		{[]string{"Authorization", "Bearer sk-llm-unknown"}, "invalid_api_key"},
		{[]string{"Authorization", "Basic YTpi"}, "invalid_api_key"},
		{[]string{"Authorization", "Bearer " + strings.Repeat(".", 1<<20)}, ""},
		{[]string{"Authorization", ""}, "missing_credentials"},
	} {
		resp, body := g.post(t, "/v1/chat/completions", chat, c.hdr...)
		if c.code == "" { // 1 MB header: refused by size (431) or by us (401), never served
			if resp.StatusCode != 401 && resp.StatusCode != 431 {
				t.Errorf("huge header: %d", resp.StatusCode)
			}
			continue
		}
		if resp.StatusCode != 401 || errCode(t, body) != c.code || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%.30s: %d %s", c.hdr[1], resp.StatusCode, body)
		}
	}
	logs := g.logs()
	for _, tok := range []string{admin, user, expired} {
		if strings.Contains(logs, tok) {
			t.Fatal("a token reached the logs")
		}
	}
	if !strings.Contains(logs, `"llm_user":"carol"`) || !strings.Contains(logs, `"llm_tier":"enterprise"`) {
		t.Fatal("JWT identity missing from the access log")
	}
}
