package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const secret = "0123456789abcdef0123456789abcdef-test-secret"

var ctx = context.Background()

func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims, hdr map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range hdr {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func good() jwt.MapClaims {
	return jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "iss": "https://idp", "aud": "llmgate",
		"org": "acme", "realm_access": map[string]any{"roles": []any{"user", "admin"}}}
}

func hsVerifier(t testing.TB, mut func(*JWTConfig)) *Verifier {
	c := JWTConfig{Secret: secret, Issuer: "https://idp", Audience: "llmgate", RolesClaim: "realm_access.roles", OrgClaim: "org", TierClaim: "tier", DefaultTier: "trial"}
	if mut != nil {
		mut(&c)
	}
	v, err := NewVerifier(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func code(err error) string {
	if te, ok := err.(*TokenError); ok {
		return te.Code
	}
	return fmt.Sprint(err)
}

func TestJWTClaimsMapping(t *testing.T) {
	v := hsVerifier(t, nil)
	id, err := v.Verify(ctx, sign(t, jwt.SigningMethodHS256, []byte(secret), good(), nil))
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "alice" || id.Org != "acme" || id.Tier != "trial" || !HasRole(id, "admin") || !HasRole(id, "user") {
		t.Fatalf("%+v", id)
	}
	c := good()
	c["tier"] = "professional"
	c["realm_access"] = map[string]any{"roles": "user ops"}
	id, _ = v.Verify(ctx, sign(t, jwt.SigningMethodHS256, []byte(secret), c, nil))
	if id.Tier != "professional" || HasRole(id, "admin") || !HasRole(id, "ops") {
		t.Fatalf("%+v", id)
	}
}

func TestJWTRefusals(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	v := hsVerifier(t, nil)
	pemOnly, err := NewVerifier(ctx, JWTConfig{PublicKeys: [][]byte{pubPEM}})
	if err != nil {
		t.Fatal(err)
	}
	both, err := NewVerifier(ctx, JWTConfig{Secret: secret, PublicKeys: [][]byte{pubPEM}, Algorithms: []string{"HS256", "RS256"}})
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(jwt.MapClaims)) jwt.MapClaims { c := good(); f(c); return c }
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	cases := []struct {
		name string
		v    *Verifier
		tok  string
		want string
	}{
		{"alg none", v, none, "invalid_token"},
		{"HS256 signed with the RSA public key's PEM (PEM configured)", pemOnly, sign(t, jwt.SigningMethodHS256, pubPEM, good(), nil), "invalid_token"},
		{"HS256 signed with the RSA public key's PEM (both configured)", both, sign(t, jwt.SigningMethodHS256, pubPEM, good(), nil), "invalid_token"},
		{"missing exp", v, sign(t, jwt.SigningMethodHS256, []byte(secret), mod(func(c jwt.MapClaims) { delete(c, "exp") }), nil), "invalid_token"},
		{"expired", v, sign(t, jwt.SigningMethodHS256, []byte(secret), mod(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }), nil), "token_expired"},
		{"future nbf", v, sign(t, jwt.SigningMethodHS256, []byte(secret), mod(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), nil), "invalid_token"},
		{"wrong iss", v, sign(t, jwt.SigningMethodHS256, []byte(secret), mod(func(c jwt.MapClaims) { c["iss"] = "https://evil" }), nil), "invalid_token"},
		{"wrong aud", v, sign(t, jwt.SigningMethodHS256, []byte(secret), mod(func(c jwt.MapClaims) { c["aud"] = "other" }), nil), "invalid_token"},
		{"wrong secret", v, sign(t, jwt.SigningMethodHS256, []byte(secret+"x"), good(), nil), "invalid_token"},
		{"no user", v, sign(t, jwt.SigningMethodHS256, []byte(secret), mod(func(c jwt.MapClaims) { delete(c, "sub") }), nil), "invalid_token"},
		{"RS256 when only HS256 is pinned", v, sign(t, jwt.SigningMethodRS256, rsaKey, good(), nil), "invalid_token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := c.v.Verify(ctx, c.tok)
			if err == nil || code(err) != c.want {
				t.Fatalf("got %+v %v, want %s", id, err, c.want)
			}
			if strings.Contains(err.Error(), c.tok) {
				t.Fatal("the error repeats the token")
			}
		})
	}
	// The genuine RS256 token passes the PEM verifier; leeway is honoured.
	if _, err := pemOnly.Verify(ctx, sign(t, jwt.SigningMethodRS256, rsaKey, good(), nil)); err != nil {
		t.Fatal(err)
	}
	lenient := hsVerifier(t, func(c *JWTConfig) { c.Leeway = time.Minute })
	c := good()
	c["exp"] = time.Now().Add(-30 * time.Second).Unix()
	if _, err := lenient.Verify(ctx, sign(t, jwt.SigningMethodHS256, []byte(secret), c, nil)); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	if _, err := NewVerifier(ctx, JWTConfig{Secret: secret, Leeway: 2 * time.Minute}); err == nil {
		t.Fatal("leeway over 60s accepted")
	}
	if _, err := NewVerifier(ctx, JWTConfig{Secret: "short"}); err == nil {
		t.Fatal("short secret accepted")
	}
	if _, err := NewVerifier(ctx, JWTConfig{PublicKeys: [][]byte{pubPEM}, Algorithms: []string{"HS256"}}); err == nil {
		t.Fatal("HS256 accepted without a secret")
	}
	if _, err := NewVerifier(ctx, JWTConfig{Secret: secret, Algorithms: []string{"none"}}); err == nil {
		t.Fatal("alg none accepted in config")
	}
}

// jwksServer serves a JWKS of one RSA key and counts fetches; down makes it fail.
type jwksServer struct {
	*httptest.Server
	key     *rsa.PrivateKey
	fetches atomic.Int64
	down    atomic.Bool
}

func newJWKS(t *testing.T) *jwksServer {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	s := &jwksServer{key: k}
	b64 := base64.RawURLEncoding.EncodeToString
	body, _ := json.Marshal(map[string]any{"keys": []any{map[string]string{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64(k.PublicKey.N.Bytes()), "e": b64(big.NewInt(int64(k.PublicKey.E)).Bytes()),
	}}})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func jwksVerifier(t *testing.T, url string, refresh time.Duration) *Verifier {
	c, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	v, err := NewVerifier(c, JWTConfig{JWKSURL: url, JWKSRefresh: refresh, UnknownKIDInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestJWKS(t *testing.T) {
	s := newJWKS(t)
	v := jwksVerifier(t, s.URL, time.Hour)
	deadline := time.Now().Add(3 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if _, err = v.Verify(ctx, sign(t, jwt.SigningMethodRS256, s.key, good(), map[string]any{"kid": "k1"})); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("valid JWKS token: %v", err)
	}
	// No kid with a JWKS: refused.
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, s.key, good(), nil)); code(err) != "invalid_token" {
		t.Fatalf("no kid: %v", err)
	}
	// A flood of unknown kids: at most one refetch in the window, and fast.
	before := s.fetches.Load()
	start := time.Now()
	for i := 0; i < 200; i++ {
		if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, s.key, good(), map[string]any{"kid": fmt.Sprint("unknown-", i)})); err == nil {
			t.Fatal("unknown kid accepted")
		}
	}
	if n := s.fetches.Load() - before; n > 1 {
		t.Fatalf("%d JWKS fetches for a flood of unknown kids", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("unknown kids took %v", d)
	}
	// Outage with a warm cache: cached keys keep working.
	s.down.Store(true)
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, s.key, good(), map[string]any{"kid": "k1"})); err != nil {
		t.Fatalf("warm cache during outage: %v", err)
	}
}

func TestJWKSColdStartFailsClosed(t *testing.T) {
	s := newJWKS(t)
	s.down.Store(true)
	v := jwksVerifier(t, s.URL, time.Hour)
	start := time.Now()
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodRS256, s.key, good(), map[string]any{"kid": "k1"})); err == nil {
		t.Fatal("accepted with no keys")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("slow refusal")
	}
}

func TestExtractAndClassify(t *testing.T) {
	h := http.Header{}
	if _, k := Extract(h); k != None {
		t.Fatal(k)
	}
	h.Set("X-Api-Key", "sk-llm-abc")
	if c, k := Extract(h); k != APIKey || c != "sk-llm-abc" {
		t.Fatal(c, k)
	}
	h.Set("Authorization", "bearer aaa.bbb.ccc")
	if c, k := Extract(h); k != JWT || c != "aaa.bbb.ccc" {
		t.Fatal(c, k)
	}
	h.Set("Authorization", "Basic dXNlcjpwYXNz")
	if _, k := Extract(h); k != Malformed {
		t.Fatal(k)
	}
	for _, c := range []string{"a..b", "a.b.c.d!", "with space", "tab\tin", "ümlaut"} {
		if Classify(c) == JWT && strings.ContainsAny(c, "!") {
			t.Fatal(c)
		}
	}
	if Classify("a.b") != APIKey || Classify("sk-llm-x.y.z") != APIKey {
		t.Fatal("classification")
	}
}

// A `Bearer ` of 1 MB of dots is refused at once with bounded allocations.
func TestHugeHeaderIsCheap(t *testing.T) {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+strings.Repeat(".", 1<<20))
	allocs := testing.AllocsPerRun(20, func() {
		if _, k := Extract(h); k != Malformed {
			t.Fatal(k)
		}
	})
	if allocs > 2 {
		t.Fatalf("%v allocations for a 1 MB header", allocs)
	}
}

func FuzzExtract(f *testing.F) {
	f.Add("Bearer sk-llm-abc", "")
	f.Add("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig", "")
	f.Add("", "sk-llm-key")
	f.Add("Bearer ...", "")
	f.Fuzz(func(t *testing.T, authz, xkey string) {
		h := http.Header{}
		if authz != "" {
			h["Authorization"] = []string{authz}
		}
		if xkey != "" {
			h["X-Api-Key"] = []string{xkey}
		}
		cred, kind := Extract(h)
		switch kind {
		case JWT:
			if strings.Count(cred, ".") != 2 || len(cred) > MaxCredentialLen {
				t.Fatalf("not a JWT shape: %q", cred)
			}
			// The verifier must refuse garbage without panicking.
			v := hsVerifier(t, nil)
			_, _ = v.Verify(ctx, cred)
		case APIKey:
			if cred == "" || len(cred) > MaxCredentialLen || strings.ContainsAny(cred, " \t\r\n") {
				t.Fatalf("bad key accepted: %q", cred)
			}
		}
	})
}

// ES256 and its key type work through PEM too.
func TestES256PEM(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	v, err := NewVerifier(ctx, JWTConfig{PublicKeys: [][]byte{pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, sign(t, jwt.SigningMethodES256, k, good(), nil)); err != nil {
		t.Fatal(err)
	}
}
