package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/llmgate/llmgate/cache"
	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/sqlstore"
	"github.com/llmgate/llmgate/storage/storetest"
)

func TestKeysLifecycle(t *testing.T) {
	s, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := cache.NewLocal()
	defer c.Close()
	k := &Keys{Store: s, Cache: c}
	// A lookup of a key before it exists must not hide it once created.
	rec, secret, err := k.Create(ctx, "alice", "laptop", []string{"chat"})
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) < 40 || secret[:7] != APIKeyPrefix || rec.Hash != HashKey(secret) || rec.Prefix != secret[:11] {
		t.Fatalf("%+v %q", rec, secret)
	}
	stored, _ := s.GetAPIKeyByHash(ctx, rec.Hash)
	if stored.Hash == secret || stored.ID != rec.ID {
		t.Fatal("the secret itself was stored")
	}
	got, err := k.Lookup(ctx, HashKey(secret))
	if err != nil || got.Owner != "alice" {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := k.Lookup(ctx, HashKey("sk-llm-nope")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	if err := k.Revoke(ctx, "bob", rec.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("revoked another user's key")
	}
	if err := k.Revoke(ctx, "alice", rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Lookup(ctx, HashKey(secret)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked key still works: %v", err)
	}
}

// Two instances on one Redis and one store: a key revoked through one stops
// working on the other within a second, although the other had it cached.
func TestRevocationReachesOtherInstances(t *testing.T) {
	addr := storetest.RedisAddr(t)
	s, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	prefix := "llmgate-test-" + hex.EncodeToString(b) + ":"
	c1, _ := cache.NewRedis(cache.RedisOptions{URL: addr, Prefix: prefix})
	defer c1.Close()
	c2, _ := cache.NewRedis(cache.RedisOptions{URL: addr, Prefix: prefix})
	defer c2.Close()
	k1, k2 := &Keys{Store: s, Cache: c1}, &Keys{Store: s, Cache: c2}
	rec, secret, err := k1.Create(ctx, "alice", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // warm instance 2's cache
		if _, err := k2.Lookup(ctx, HashKey(secret)); err != nil {
			t.Fatal(err)
		}
	}
	if err := k1.Revoke(ctx, "alice", rec.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		_, err := k2.Lookup(ctx, HashKey(secret))
		if errors.Is(err, ErrRevoked) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance 2 still accepts the revoked key after 1s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
