package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/llmgate/llmgate/cache"
	"github.com/llmgate/llmgate/storage"
)

// NewAPIKey makes a gateway key: "sk-llm-" and 256 random bits. It returns
// the key (shown once), its hash (stored), a display prefix and an id.
func NewAPIKey() (key, hash, prefix, id string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("auth: no randomness: " + err.Error())
	}
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	idb := make([]byte, 9)
	_, _ = rand.Read(idb)
	return key, HashKey(key), key[:len(APIKeyPrefix)+4], "key_" + base64.RawURLEncoding.EncodeToString(idb)
}

// HashKey is the stored form of a key: hex SHA-256. A 256-bit random key
// needs no slow hash; SHA-256 keeps lookups cheap.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// Keys looks API keys up through the cache and invalidates them everywhere
// on revocation.
type Keys struct {
	Store storage.Store
	Cache cache.Cache
	// TTL of a cached lookup (default 60s); Redis invalidation removes it
	// from every instance as soon as the key is revoked.
	TTL time.Duration
}

// ErrRevoked: the key exists but was revoked.
var ErrRevoked = errors.New("auth: API key revoked")

type cachedKey struct {
	ID      string   `json:"id"`
	Owner   string   `json:"owner"`
	Scopes  []string `json:"scopes,omitempty"`
	Revoked bool     `json:"revoked,omitempty"`
	Missing bool     `json:"missing,omitempty"`
}

func cacheKey(hash string) string { return "apikey:" + hash }

// Lookup finds the key with this hash. Unknown keys give storage.ErrNotFound,
// revoked ones ErrRevoked; both are cached briefly too, so a flood of bad
// keys does not reach the database.
func (k *Keys) Lookup(ctx context.Context, hash string) (storage.APIKey, error) {
	if b, ok := k.Cache.Get(ctx, cacheKey(hash)); ok {
		var c cachedKey
		if json.Unmarshal(b, &c) == nil {
			switch {
			case c.Missing:
				return storage.APIKey{}, storage.ErrNotFound
			case c.Revoked:
				return storage.APIKey{}, ErrRevoked
			}
			return storage.APIKey{ID: c.ID, Owner: c.Owner, Scopes: c.Scopes, Hash: hash}, nil
		}
	}
	key, err := k.Store.GetAPIKeyByHash(ctx, hash)
	ttl := k.TTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	var c cachedKey
	switch {
	case errors.Is(err, storage.ErrNotFound):
		c.Missing = true
		ttl = min(ttl, 5*time.Second)
	case err != nil:
		return key, err
	default:
		c = cachedKey{ID: key.ID, Owner: key.Owner, Scopes: key.Scopes, Revoked: key.RevokedAt != nil}
	}
	b, _ := json.Marshal(c)
	k.Cache.Set(ctx, cacheKey(hash), b, ttl)
	if c.Missing {
		return key, storage.ErrNotFound
	}
	if c.Revoked {
		return key, ErrRevoked
	}
	return key, nil
}

// Create stores a new key for owner and returns it with the secret, which is
// never stored or shown again.
func (k *Keys) Create(ctx context.Context, owner, name string, scopes []string) (storage.APIKey, string, error) {
	secret, hash, prefix, id := NewAPIKey()
	rec := storage.APIKey{ID: id, Hash: hash, Prefix: prefix, Owner: owner, Name: name, Scopes: scopes, CreatedAt: time.Now().UTC()}
	if err := k.Store.CreateAPIKey(ctx, rec); err != nil {
		return rec, "", err
	}
	k.Cache.Delete(ctx, cacheKey(hash)) // a cached "missing" must not outlive creation
	return rec, secret, nil
}

// Revoke revokes a key of owner (any owner when owner is empty) and drops it
// from every instance's cache.
func (k *Keys) Revoke(ctx context.Context, owner, id string) error {
	keys, err := k.Store.ListAPIKeys(ctx, owner)
	if err != nil {
		return err
	}
	for _, key := range keys {
		if key.ID == id {
			if err := k.Store.RevokeAPIKey(ctx, owner, id, time.Now().UTC()); err != nil {
				return err
			}
			k.Cache.Delete(ctx, cacheKey(key.Hash))
			return nil
		}
	}
	return storage.ErrNotFound
}

// EqualSecret compares two secrets in constant time (of their hashes, so
// lengths do not leak either).
func EqualSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// User reads a user's record through the cache (tier and org for API-key
// callers). Unknown users give storage.ErrNotFound.
func (k *Keys) User(ctx context.Context, id string) (storage.User, error) {
	ck := "user:" + id
	if b, ok := k.Cache.Get(ctx, ck); ok {
		var u storage.User
		if json.Unmarshal(b, &u) == nil {
			if u.ID == "" {
				return u, storage.ErrNotFound
			}
			return u, nil
		}
	}
	u, err := k.Store.GetUser(ctx, id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return u, err
	}
	if errors.Is(err, storage.ErrNotFound) {
		u = storage.User{}
	}
	b, _ := json.Marshal(u)
	k.Cache.Set(ctx, ck, b, time.Minute)
	if u.ID == "" {
		return u, storage.ErrNotFound
	}
	return u, nil
}
