// Package vault encrypts users' own provider keys (BYOK) with AES-256-GCM
// under a key ring. Every ciphertext names its key id ("v1:<kid>:<data>")
// and is bound, as additional authenticated data, to its owner, key id and
// provider, so a row copied to another user or provider does not decrypt.
// Fernet tokens written by the Python system decrypt with the same keys.
package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fernet/fernet-go"
)

// LegacyKeyID marks Fernet ciphertext imported from the seed system.
const LegacyKeyID = "legacy-fernet"

var (
	// ErrUnknownKeyID: the ciphertext names a key the ring does not hold.
	ErrUnknownKeyID = errors.New("vault: ciphertext was encrypted with a key that is not in the key ring")
	// ErrDecrypt: tampered, truncated, or bound to another owner or provider.
	ErrDecrypt = errors.New("vault: ciphertext does not decrypt")
)

type ringKey struct {
	id   string
	aead cipher.AEAD
	fer  *fernet.Key
}

// Ring is a key ring: the first key encrypts, all keys decrypt.
type Ring struct {
	keys []ringKey
	byID map[string]*ringKey
}

// ParseRing reads comma-separated URL-safe base64 32-byte keys (the shape
// of a Fernet key, so the seed's BYOK_ENCRYPTION_KEY works as it is). Errors
// never repeat a key.
func ParseRing(s string) (*Ring, error) {
	r := &Ring{byID: map[string]*ringKey{}}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		raw, err := base64.URLEncoding.DecodeString(part)
		if err != nil {
			raw, err = base64.RawURLEncoding.DecodeString(part)
		}
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("vault: key %d of the ring is not URL-safe base64 of 32 bytes", i+1)
		}
		block, _ := aes.NewCipher(raw)
		aead, _ := cipher.NewGCM(block)
		fk := new(fernet.Key)
		copy(fk[:], raw)
		h := sha256.Sum256(append([]byte("llmgate-kid:"), raw...))
		k := ringKey{id: "k" + hex.EncodeToString(h[:4]), aead: aead, fer: fk}
		if _, dup := r.byID[k.id]; dup {
			continue
		}
		r.keys = append(r.keys, k)
		r.byID[k.id] = &r.keys[len(r.keys)-1]
	}
	if len(r.keys) == 0 {
		return nil, errors.New("vault: the key ring is empty")
	}
	for i := range r.keys { // the map must point into the final slice
		r.byID[r.keys[i].id] = &r.keys[i]
	}
	return r, nil
}

// ActiveID is the id of the key that encrypts.
func (r *Ring) ActiveID() string { return r.keys[0].id }

// Has reports whether the ring holds a key id.
func (r *Ring) Has(id string) bool { _, ok := r.byID[id]; return ok }

// IDs lists the ring's key ids, the active first.
func (r *Ring) IDs() []string {
	out := make([]string, len(r.keys))
	for i, k := range r.keys {
		out[i] = k.id
	}
	return out
}

func aad(owner, kid, provider string) []byte {
	var b []byte
	for _, s := range []string{"llmgate-byok-v1", owner, kid, provider} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// Encrypt seals plaintext for (owner, provider) under the active key. It
// returns the ciphertext and the key id it names.
func (r *Ring) Encrypt(owner, provider string, plaintext []byte) (string, string) {
	k := r.keys[0]
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("vault: no randomness: " + err.Error())
	}
	sealed := k.aead.Seal(nonce, nonce, plaintext, aad(owner, k.id, provider))
	return "v1:" + k.id + ":" + base64.RawURLEncoding.EncodeToString(sealed), k.id
}

// Decrypt opens a ciphertext stored for (owner, provider). legacy reports
// a Fernet token, which the caller should re-encrypt with Encrypt.
func (r *Ring) Decrypt(owner, provider, ciphertext string) (plaintext []byte, legacy bool, err error) {
	if strings.HasPrefix(ciphertext, "gAAAAA") {
		keys := make([]*fernet.Key, len(r.keys))
		for i := range r.keys {
			keys[i] = r.keys[i].fer
		}
		// No TTL: stored keys do not age out by token time.
		msg := fernet.VerifyAndDecrypt([]byte(ciphertext), 0*time.Second, keys)
		if msg == nil {
			return nil, true, ErrDecrypt
		}
		return msg, true, nil
	}
	ver, rest, ok := strings.Cut(ciphertext, ":")
	if !ok || ver != "v1" {
		return nil, false, ErrDecrypt
	}
	kid, data, ok := strings.Cut(rest, ":")
	if !ok {
		return nil, false, ErrDecrypt
	}
	k, ok := r.byID[kid]
	if !ok {
		return nil, false, ErrUnknownKeyID
	}
	sealed, err := base64.RawURLEncoding.DecodeString(data)
	if err != nil || len(sealed) < k.aead.NonceSize()+k.aead.Overhead() {
		return nil, false, ErrDecrypt
	}
	ns := k.aead.NonceSize()
	pt, err := k.aead.Open(nil, sealed[:ns], sealed[ns:], aad(owner, kid, provider))
	if err != nil {
		return nil, false, ErrDecrypt
	}
	return pt, false, nil
}

// KeyIDOf names the key a ciphertext was made with (LegacyKeyID for Fernet).
func KeyIDOf(ciphertext string) string {
	if strings.HasPrefix(ciphertext, "gAAAAA") {
		return LegacyKeyID
	}
	parts := strings.SplitN(ciphertext, ":", 3)
	if len(parts) == 3 && parts[0] == "v1" {
		return parts[1]
	}
	return ""
}

// Mask shows the start and the last four characters of a key: "sk-…abcd".
func Mask(key string) string {
	if len(key) <= 8 {
		return "…"
	}
	prefix := key[:3]
	if i := strings.IndexAny(key[:min(len(key), 8)], "-_"); i > 0 {
		prefix = key[:i+1]
	}
	return prefix + "…" + key[len(key)-4:]
}
