package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"path/filepath"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/llmgate/llmgate/cache"
	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/sqlstore"
)

func pemOf(b *testing.B, pub any) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		b.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// BenchmarkVerify is the per-request cost of checking a token.
// go test ./auth -run X -bench .
func BenchmarkVerify(b *testing.B) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, c := range []struct {
		name string
		cfg  JWTConfig
		m    jwt.SigningMethod
		key  any
	}{
		{"HS256", JWTConfig{Secret: secret}, jwt.SigningMethodHS256, []byte(secret)},
		{"RS256", JWTConfig{PublicKeys: [][]byte{pemOf(b, &rk.PublicKey)}}, jwt.SigningMethodRS256, rk},
		{"ES256", JWTConfig{PublicKeys: [][]byte{pemOf(b, &ek.PublicKey)}}, jwt.SigningMethodES256, ek},
	} {
		b.Run(c.name, func(b *testing.B) {
			v, err := NewVerifier(ctx, c.cfg)
			if err != nil {
				b.Fatal(err)
			}
			tok := sign(b, c.m, c.key, good(), nil)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAPIKeyLookupCacheHit is an API-key check served from the
// in-process cache: hash the key, read the cache, decode.
func BenchmarkAPIKeyLookupCacheHit(b *testing.B) {
	s, err := sqlstore.OpenSQLite(ctx, filepath.Join(b.TempDir(), "k.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := cache.NewLocal()
	defer c.Close()
	keys := &Keys{Store: s, Cache: c}
	_, secretKey, err := keys.Create(ctx, "u", "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := keys.Lookup(ctx, HashKey(secretKey)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := keys.Lookup(ctx, HashKey(secretKey)); err != nil {
			b.Fatal(err)
		}
	}
	_ = storage.ErrNotFound
}
