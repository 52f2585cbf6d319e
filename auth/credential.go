// Package auth recognises callers: gateway API keys (stored hashed, looked up
// through the cache) and JWTs (shared secret, PEM public keys or a JWKS),
// mapped to an identity with user, org, tier and roles.
package auth

import (
	"net/http"
	"strings"
)

// MaxCredentialLen bounds a credential; anything longer is refused before
// it is parsed.
const MaxCredentialLen = 8 << 10

// Kind of credential a request carries.
type Kind uint8

const (
	None Kind = iota
	APIKey
	JWT
	// Malformed is a credential header that cannot be one of the others.
	Malformed
)

// APIKeyPrefix starts every gateway API key.
const APIKeyPrefix = "sk-llm-"

// Extract reads the caller's credential from `Authorization: Bearer …`
// (OpenAI SDKs, JWTs) or `x-api-key` (Anthropic SDKs).
func Extract(h http.Header) (string, Kind) {
	cred := ""
	if v := h.Get("Authorization"); v != "" {
		scheme, rest, ok := strings.Cut(v, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", Malformed
		}
		cred = strings.TrimSpace(rest)
	} else if v := h.Get("X-Api-Key"); v != "" {
		cred = strings.TrimSpace(v)
	} else {
		return "", None
	}
	return cred, Classify(cred)
}

// Classify tells an API key from a JWT by shape, without parsing either.
func Classify(cred string) Kind {
	switch {
	case cred == "" || len(cred) > MaxCredentialLen:
		return Malformed
	case strings.Count(cred, ".") == 2 && !strings.HasPrefix(cred, APIKeyPrefix):
		for _, part := range strings.Split(cred, ".") {
			if part == "" || !isB64URL(part) {
				return Malformed
			}
		}
		return JWT
	}
	for i := 0; i < len(cred); i++ {
		if c := cred[i]; c <= ' ' || c >= 0x7f {
			return Malformed
		}
	}
	return APIKey
}

func isB64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return true
}
