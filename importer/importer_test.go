package importer

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/fernet/fernet-go"
	"github.com/jackc/pgx/v5"

	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/sqlstore"
	"github.com/llmgate/llmgate/storage/storetest"
	"github.com/llmgate/llmgate/vault"
)

// seedSchema creates the four Ops-Center tables, with the seed document's
// columns, in a schema of their own, with a few rows.
func seedSchema(t *testing.T, conn *pgx.Conn) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	schema := "seed_" + hex.EncodeToString(b)
	ctx := context.Background()
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	_, err := conn.Exec(ctx, `
CREATE SCHEMA `+schema+`;
SET search_path TO `+schema+`;
CREATE TABLE litellm_credits (user_id TEXT, tier TEXT, total_credits NUMERIC(12,6), used_credits NUMERIC(12,6), reset_date TIMESTAMP, is_active BOOLEAN);
CREATE TABLE litellm_usage (user_id TEXT, model TEXT, provider TEXT, tokens INTEGER, cost NUMERIC(12,6), timestamp TIMESTAMP);
CREATE TABLE litellm_byok_keys (user_id TEXT, provider TEXT, encrypted_key TEXT, key_name TEXT, is_active BOOLEAN, created_at TIMESTAMP);
CREATE TABLE litellm_provider_health (provider TEXT, status TEXT, response_time DOUBLE PRECISION, last_check TIMESTAMP, error_count INTEGER);
INSERT INTO litellm_credits VALUES
	('alice', 'professional', 100.5, 20.25, now(), true),
	('bob', 'trial', 5, 5, now(), true),
	('carol', 'starter', 10.1234567, 0, now(), false);
INSERT INTO litellm_usage VALUES
	('alice', 'gpt-4o', 'openai', 1200, 0.0125, '2026-01-02 03:04:05'),
	('alice', 'gpt-4o', 'openai', 1200, 0.0125, '2026-01-02 03:04:05'),
	('bob', 'claude-3-5-haiku', 'anthropic', 300, 0.001, '2026-01-03 00:00:00');
INSERT INTO litellm_byok_keys VALUES
	('alice', 'openai', 'gAAAAABlegacyfernettoken', 'my key', true, '2025-12-01'),
	('bob', 'groq', 'gAAAAABanother', NULL, false, NULL);
INSERT INTO litellm_provider_health VALUES ('openai', 'healthy', 231.6, now(), 2);
RESET search_path;`)
	if err != nil {
		t.Fatal(err)
	}
	return schema
}

func TestImportIsCompleteAndIdempotent(t *testing.T) {
	dsn := storetest.PostgresURL(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := seedSchema(t, conn)
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "l.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	rep, err := Import(ctx, conn, schema, store)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Users != 3 || rep.Credits != 2 || rep.Usage != 3 || rep.BYOK != 2 || rep.Health != 1 {
		t.Fatalf("first run: %s", rep)
	}
	again, err := Import(ctx, conn, schema, store)
	if err != nil {
		t.Fatal(err)
	}
	if again.Credits != 0 || again.CreditsSkipped != 2 || again.Usage != 0 || again.UsageSkipped != 3 {
		t.Fatalf("second run imported again: %s", again)
	}

	want := map[string]int64{"alice": 80_250_000, "bob": 0, "carol": 10_123_457}
	for user, micros := range want {
		b, err := store.GetBalance(ctx, user)
		if err != nil || b.BalanceMicros != micros {
			t.Errorf("%s: %d %v, want %d", user, b.BalanceMicros, err, micros)
		}
		es, _ := store.ListLedger(ctx, user, 10)
		if micros > 0 && (len(es) != 1 || es[0].Kind != storage.KindImport) {
			t.Errorf("%s ledger %+v", user, es)
		}
	}
	if u, _ := store.GetUser(ctx, "alice"); u.Tier != "professional" {
		t.Errorf("tier %q", u.Tier)
	}
	us, _ := store.ListUsage(ctx, storage.UsageQuery{User: "alice"})
	if len(us) != 2 || us[0].CostMicros != 12_500 || us[0].TokensIn != 1200 || !us[0].Estimated || us[0].RequestID == us[1].RequestID {
		t.Fatalf("usage %+v", us)
	}
	ks, _ := store.ListBYOKKeys(ctx, "")
	if len(ks) != 2 {
		t.Fatalf("byok %+v", ks)
	}
	for _, k := range ks {
		if k.KeyID != LegacyKeyID || k.Ciphertext == "" {
			t.Errorf("%+v", k)
		}
		if k.Owner == "bob" && k.Status != "disabled" {
			t.Errorf("inactive key imported as %s", k.Status)
		}
	}
	hs, _ := store.ListHealth(ctx)
	if len(hs) != 1 || hs[0].LatencyMS != 232 || hs[0].ErrorCount != 2 || hs[0].State != "healthy" {
		t.Fatalf("health %+v", hs)
	}
}

func TestParseSignedMicros(t *testing.T) {
	for in, want := range map[string]int64{"1.5": 1_500_000, "-0.000001": -1, "80.250000": 80_250_000, "0": 0} {
		if got, err := parseSignedMicros(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, in := range []string{"", "1e5", "1.2345678", "abc", "-"} {
		if _, err := parseSignedMicros(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestRewrapMovesEveryRowToTheActiveKey(t *testing.T) {
	ctx := context.Background()
	s, err := sqlstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	oldRing, _ := vault.ParseRing("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=")
	ct, kid := oldRing.Encrypt("u", "openai", []byte("sk-one"))
	_ = s.PutBYOKKey(ctx, storage.BYOKKey{ID: "a", Owner: "u", Provider: "openai", Ciphertext: ct, KeyID: kid})
	legacy, _ := fernet.EncryptAndSign([]byte("sk-two"), fernet.MustDecodeKeys("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=")[0])
	_ = s.PutBYOKKey(ctx, storage.BYOKKey{ID: "b", Owner: "v", Provider: "groq", Ciphertext: string(legacy), KeyID: vault.LegacyKeyID})
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	ring, _ := vault.ParseRing(base64.URLEncoding.EncodeToString(b) + ",cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=")
	n, failed, err := Rewrap(ctx, s, ring)
	if err != nil || n != 2 || failed != 0 {
		t.Fatalf("%d %d %v", n, failed, err)
	}
	counts, _ := s.CountBYOKKeys(ctx)
	if len(counts) != 1 || counts[ring.ActiveID()] != 2 {
		t.Fatalf("%v", counts)
	}
	ks, _ := s.ListBYOKKeys(ctx, "")
	for _, k := range ks {
		pt, legacy, err := ring.Decrypt(k.Owner, k.Provider, k.Ciphertext)
		if err != nil || legacy || (string(pt) != "sk-one" && string(pt) != "sk-two") {
			t.Fatalf("%s: %q %v", k.ID, pt, err)
		}
	}
	if n, _, _ := Rewrap(ctx, s, ring); n != 0 {
		t.Fatal("a second rewrap rewrote again")
	}
}
