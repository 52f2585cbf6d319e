package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/llmgate/llmgate/exchange"
)

// JWTConfig configures token verification.
type JWTConfig struct {
	// Secret enables HMAC algorithms (HS256 by default).
	Secret string
	// PublicKeys are PEM-encoded public keys (RSA, ECDSA, Ed25519).
	PublicKeys [][]byte
	// JWKSURL is fetched and refreshed through keyfunc.
	JWKSURL string
	// Algorithms accepted; empty picks HS256 with a secret and RS256, ES256
	// and EdDSA with public keys or a JWKS.
	Algorithms []string
	Issuer     string
	Audience   string
	// Leeway for exp/nbf/iat; at most 60s.
	Leeway time.Duration
	// JWKSRefresh is the periodic refresh (default 1h); UnknownKIDInterval
	// allows one refetch per interval for a kid not in the set (default 5m).
	JWKSRefresh        time.Duration
	UnknownKIDInterval time.Duration
	// HTTPClient fetches the JWKS (default: 10s timeout).
	HTTPClient *http.Client
	// Claims names, dotted for nested claims.
	UserClaim, OrgClaim, TierClaim, RolesClaim string
	DefaultTier                                string
}

// Verifier checks JWTs and maps their claims to an identity.
type Verifier struct {
	cfg    JWTConfig
	parser *jwt.Parser
	secret []byte
	keys   []crypto.PublicKey
	jwks   keyfunc.Keyfunc
}

// MinSecretLen is the shortest HMAC secret accepted (256 bits).
const MinSecretLen = 32

// NewVerifier builds a verifier; ctx ends the JWKS refresh.
func NewVerifier(ctx context.Context, c JWTConfig) (*Verifier, error) {
	v := &Verifier{cfg: c}
	if c.Leeway < 0 || c.Leeway > time.Minute {
		return nil, errors.New("jwt: leeway must be between 0 and 60s")
	}
	if c.Secret != "" {
		if len(c.Secret) < MinSecretLen {
			return nil, fmt.Errorf("jwt: the shared secret must be at least %d bytes", MinSecretLen)
		}
		v.secret = []byte(c.Secret)
	}
	for i, p := range c.PublicKeys {
		k, err := parsePublicKey(p)
		if err != nil {
			return nil, fmt.Errorf("jwt: public key %d: %w", i+1, err)
		}
		v.keys = append(v.keys, k)
	}
	if v.secret == nil && len(v.keys) == 0 && c.JWKSURL == "" {
		return nil, errors.New("jwt: configure a secret, a public key or a JWKS URL")
	}
	algs := c.Algorithms
	if len(algs) == 0 {
		if v.secret != nil {
			algs = append(algs, "HS256")
		}
		if len(v.keys) > 0 || c.JWKSURL != "" {
			algs = append(algs, "RS256", "ES256", "EdDSA")
		}
	}
	for _, a := range algs {
		m := jwt.GetSigningMethod(a)
		if m == nil || a == "none" {
			return nil, fmt.Errorf("jwt: algorithm %q is not supported", a)
		}
		if _, hmac := m.(*jwt.SigningMethodHMAC); hmac && v.secret == nil {
			return nil, fmt.Errorf("jwt: algorithm %s needs a shared secret", a)
		}
	}
	v.cfg.Algorithms = algs
	if c.JWKSURL != "" {
		client := c.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		refresh, unknown := c.JWKSRefresh, c.UnknownKIDInterval
		if refresh <= 0 {
			refresh = time.Hour
		}
		if unknown <= 0 {
			unknown = 5 * time.Minute
		}
		noErr := true // a JWKS that is down at start must not stop Caddy: it fails closed
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{c.JWKSURL}, keyfunc.Override{
			Client:                    client,
			RefreshInterval:           refresh,
			RefreshUnknownKID:         rate.NewLimiter(rate.Every(unknown), 1),
			RateLimitWaitMax:          time.Millisecond, // never queue requests behind the limiter
			NoErrorReturnFirstHTTPReq: &noErr,
			RefreshErrorHandlerFunc:   func(string) func(context.Context, error) { return func(context.Context, error) {} },
		})
		if err != nil {
			return nil, errors.New("jwt: the JWKS URL is not usable")
		}
		v.jwks = kf
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(algs), jwt.WithExpirationRequired(), jwt.WithLeeway(c.Leeway), jwt.WithIssuedAt()}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	if v.cfg.UserClaim == "" {
		v.cfg.UserClaim = "sub"
	}
	return v, nil
}

func parsePublicKey(p []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(p)
	if block == nil {
		return nil, errors.New("not PEM")
	}
	var k any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		k, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			k = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", k)
}

// keyFor gives the verification key(s) for a token, by its algorithm family,
// so a key of one kind can never verify a token of another (an HS256 token
// is never checked against an RSA public key's bytes).
func (v *Verifier) keyFor(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		switch t.Method.(type) {
		case *jwt.SigningMethodHMAC:
			if v.secret == nil {
				return nil, errors.New("no shared secret")
			}
			return v.secret, nil
		}
		if v.jwks != nil {
			kid, _ := t.Header["kid"].(string)
			if kid != "" {
				k, err := v.jwks.KeyfuncCtx(ctx)(t)
				if err == nil || len(v.keys) == 0 {
					return k, err
				}
			} else if len(v.keys) == 0 {
				return nil, errors.New("token has no kid")
			}
		}
		if len(v.keys) == 0 {
			return nil, errors.New("no public key")
		}
		set := jwt.VerificationKeySet{}
		for _, k := range v.keys {
			set.Keys = append(set.Keys, k)
		}
		return set, nil
	}
}

// TokenError is why a token was refused; Code is the OpenAI-style code.
type TokenError struct {
	Code string // invalid_token or token_expired
	Msg  string
}

func (e *TokenError) Error() string { return e.Msg }

// Verify checks a token and maps its claims. Errors never repeat the token.
func (v *Verifier) Verify(ctx context.Context, token string) (*exchange.Identity, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, v.keyFor(ctx))
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return nil, &TokenError{"token_expired", "the token has expired"}
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return nil, &TokenError{"invalid_token", "the token is not valid yet"}
		case errors.Is(err, jwt.ErrTokenInvalidIssuer):
			return nil, &TokenError{"invalid_token", "the token's issuer is not accepted"}
		case errors.Is(err, jwt.ErrTokenInvalidAudience):
			return nil, &TokenError{"invalid_token", "the token's audience is not accepted"}
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return nil, &TokenError{"invalid_token", "the token lacks a required claim (exp)"}
		}
		return nil, &TokenError{"invalid_token", "the token is not valid"}
	}
	id := &exchange.Identity{
		User:  claimString(claims, v.cfg.UserClaim),
		Org:   claimString(claims, v.cfg.OrgClaim),
		Tier:  claimString(claims, v.cfg.TierClaim),
		Roles: claimStrings(claims, v.cfg.RolesClaim),
	}
	if id.User == "" {
		return nil, &TokenError{"invalid_token", "the token names no user (" + v.cfg.UserClaim + ")"}
	}
	if id.Tier == "" {
		id.Tier = v.cfg.DefaultTier
	}
	return id, nil
}

// claim follows a dotted path through nested claims.
func claim(c map[string]any, path string) any {
	if path == "" {
		return nil
	}
	var cur any = c
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func claimString(c map[string]any, path string) string {
	switch v := claim(c, path).(type) {
	case string:
		return v
	case []any:
		if len(v) > 0 {
			s, _ := v[0].(string)
			return s
		}
	}
	return ""
}

// claimStrings reads roles from an array of strings or a space-separated
// string (an OAuth scope claim).
func claimStrings(c map[string]any, path string) []string {
	switch v := claim(c, path).(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// HasRole reports whether id has role r.
func HasRole(id *exchange.Identity, r string) bool { return id != nil && slices.Contains(id.Roles, r) }
