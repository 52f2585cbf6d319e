package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/sqlstore"
	"github.com/llmgate/llmgate/vault"
)

func ringKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.URLEncoding.EncodeToString(b)
}

// A key ring that cannot decrypt rows already stored fails the config load.
func TestKeyRingMustReadStoredKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.db")
	s, err := sqlstore.OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	oldKey := ringKey()
	old, _ := vault.ParseRing(oldKey)
	ct, kid := old.Encrypt("u", "p", []byte("sk-user-key-123"))
	if err := s.PutBYOKKey(context.Background(), storage.BYOKKey{ID: "k1", Owner: "u", Provider: "p", Ciphertext: ct, KeyID: kid}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	provision := func(ring string) error {
		app := &App{NoBuiltinCatalog: true, Storage: &StorageConfig{Path: path}, BYOK: &BYOKConfig{KeyRing: ring}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		err := app.Provision(ctx)
		_ = app.Cleanup()
		return err
	}
	newKey := ringKey()
	err = provision(newKey)
	if err == nil || !strings.Contains(err.Error(), kid) || strings.Contains(err.Error(), newKey) || strings.Contains(err.Error(), oldKey) {
		t.Fatalf("a ring without the old key was accepted, or the error shows a key: %v", err)
	}
	if err := provision(newKey + "," + oldKey); err != nil {
		t.Fatalf("rotated ring refused: %v", err)
	}
	if err := provision("not-a-key"); err == nil {
		t.Fatal("a malformed ring was accepted")
	}
}

// BenchmarkLoadBYOK is the per-request cost of loading and decrypting a
// caller's keys (three providers) from the cache.
func BenchmarkLoadBYOK(b *testing.B) {
	k := ringKey()
	app := &App{NoBuiltinCatalog: true, Storage: &StorageConfig{Path: filepath.Join(b.TempDir(), "b.db")}, BYOK: &BYOKConfig{KeyRing: k}}
	for _, id := range []string{"openai", "groq", "anthropic"} {
		app.Providers = append(app.Providers, &ProviderConfig{ID: id, BaseURL: "http://127.0.0.1:9/v1"})
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := app.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	defer app.Cleanup()
	for _, p := range []string{"openai", "groq", "anthropic"} {
		ct, kid := app.ring.Encrypt("u", p, []byte("sk-some-provider-key-0123456789abcdef"))
		_ = app.store.PutBYOKKey(context.Background(), storage.BYOKKey{ID: "k-" + p, Owner: "u", Provider: p, Ciphertext: ct, KeyID: kid})
	}
	bg := context.Background()
	if ks, err := app.LoadBYOK(bg, "u"); err != nil || len(ks) != 3 {
		b.Fatal(ks, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := app.LoadBYOK(bg, "u"); err != nil {
			b.Fatal(err)
		}
	}
}
