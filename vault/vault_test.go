package vault

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fernet/fernet-go"
)

func newKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.URLEncoding.EncodeToString(b)
}

func TestRoundTripAndBinding(t *testing.T) {
	r, err := ParseRing(newKey())
	if err != nil {
		t.Fatal(err)
	}
	ct, kid := r.Encrypt("alice", "openai", []byte("sk-secret-1234"))
	if !strings.HasPrefix(ct, "v1:"+kid+":") || kid != r.ActiveID() || strings.Contains(ct, "sk-secret") {
		t.Fatal(ct)
	}
	pt, legacy, err := r.Decrypt("alice", "openai", ct)
	if err != nil || legacy || string(pt) != "sk-secret-1234" {
		t.Fatal(pt, err)
	}
	// Bound to owner and provider: a copied row does not decrypt.
	for _, c := range [][2]string{{"bob", "openai"}, {"alice", "groq"}} {
		if _, _, err := r.Decrypt(c[0], c[1], ct); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("%v decrypted: %v", c, err)
		}
	}
	// Tampering, truncation, garbage.
	raw := []byte(ct)
	raw[len(raw)-3] ^= 1
	bad := []string{string(raw), ct[:len(ct)-10], "v1:" + kid + ":%%%notbase64", "v1:" + kid, "v2:x:y", "", "gAAAAAgarbage"}
	for _, b := range bad {
		if _, _, err := r.Decrypt("alice", "openai", b); err == nil {
			t.Fatalf("%q decrypted", b)
		}
	}
	other, _ := ParseRing(newKey())
	if _, _, err := other.Decrypt("alice", "openai", ct); !errors.Is(err, ErrUnknownKeyID) {
		t.Fatalf("unknown key id: %v", err)
	}
}

func TestRotation(t *testing.T) {
	oldK, newK := newKey(), newKey()
	old, _ := ParseRing(oldK)
	ct, oldID := old.Encrypt("u", "p", []byte("k"))
	rotated, _ := ParseRing(newK + "," + oldK)
	if rotated.ActiveID() == oldID || !rotated.Has(oldID) {
		t.Fatal("rotation order")
	}
	if pt, _, err := rotated.Decrypt("u", "p", ct); err != nil || string(pt) != "k" {
		t.Fatal(err)
	}
	ct2, kid := rotated.Encrypt("u", "p", []byte("k"))
	if kid == oldID || KeyIDOf(ct2) != kid {
		t.Fatal("new rows not under the new key")
	}
}

func TestBadRings(t *testing.T) {
	for _, s := range []string{"", " , ", "c2hvcnQ=", "not base64!", newKey() + ",tooshort"} {
		if _, err := ParseRing(s); err == nil {
			t.Fatalf("%q accepted", s)
		}
	}
	k := newKey()
	_, err := ParseRing(k[:20])
	if err != nil && strings.Contains(err.Error(), k[:20]) {
		t.Fatal("error repeats the key")
	}
}

// Golden tokens made with Python's cryptography, as the seed system did.
func TestLegacyFernetGolden(t *testing.T) {
	var g struct {
		Key  string
		Rows []struct{ Owner, Provider, Plaintext, Token string }
	}
	b, err := os.ReadFile("testdata/fernet_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	r, err := ParseRing(newKey() + "," + g.Key) // the seed key, not first
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range g.Rows {
		if KeyIDOf(row.Token) != LegacyKeyID {
			t.Fatal("not recognised as Fernet")
		}
		pt, legacy, err := r.Decrypt(row.Owner, row.Provider, row.Token)
		if err != nil || !legacy || string(pt) != row.Plaintext {
			t.Fatalf("%s: %q %v %v", row.Owner, pt, legacy, err)
		}
	}
	// The spec's own vector decrypts too.
	var spec []struct{ Token, Secret, Src string }
	b, _ = os.ReadFile("testdata/fernet_spec_verify.json")
	_ = json.Unmarshal(b, &spec)
	r2, _ := ParseRing(spec[0].Secret)
	if pt, _, err := r2.Decrypt("x", "y", spec[0].Token); err != nil || string(pt) != spec[0].Src {
		t.Fatalf("spec vector: %q %v", pt, err)
	}
	// A Fernet token under a key not in the ring fails.
	other, _ := ParseRing(newKey())
	if _, _, err := other.Decrypt("alice", "openai", g.Rows[0].Token); err == nil {
		t.Fatal("decrypted with the wrong key")
	}
	_ = fernet.Key{}
	_ = time.Second
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{"sk-proj-abcdefgh1234": "sk-…1234", "gsk_abcdefghijk9876": "gsk_…9876", "short": "…", "abcdefghijklmnop": "abc…mnop"} {
		if got := Mask(in); got != want {
			t.Errorf("%s: %s want %s", in, got, want)
		}
	}
}

func FuzzDecrypt(f *testing.F) {
	r, _ := ParseRing("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=")
	ct, _ := r.Encrypt("o", "p", []byte("secret"))
	f.Add(ct)
	f.Add("gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==")
	f.Add("v1::")
	f.Add("v1:" + r.ActiveID() + ":AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		pt, _, err := r.Decrypt("o", "p", s)
		if err == nil && s != ct && !strings.HasPrefix(s, "gAAAAA") && string(pt) == "secret" {
			// A different string that opens to the secret would be a forgery.
			if !strings.HasPrefix(s, "v1:"+r.ActiveID()+":") {
				t.Fatalf("forged %q", s)
			}
		}
	})
}
