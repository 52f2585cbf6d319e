// Package storetest is the conformance suite every storage.Store backend
// passes: the same behaviour, to the micro-credit, on SQLite and PostgreSQL.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmgate/llmgate/storage"
)

// Open returns a fresh, empty store for one test.
type Open func(t *testing.T) storage.Store

// Run runs every conformance test against stores from open.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"Users", testUsers},
		{"CreditsAreIdempotent", testCreditsIdempotent},
		{"ReserveSettleRelease", testReserveSettleRelease},
		{"SettleIsIdempotent", testSettleIdempotent},
		{"ExpireHolds", testExpireHolds},
		{"ConcurrentReservesNeverOverspend", testConcurrentReserves},
		{"ConcurrentSettleOnce", testConcurrentSettle},
		{"Usage", testUsage},
		{"APIKeys", testAPIKeys},
		{"BYOKKeys", testBYOK},
		{"Health", testHealth},
		{"Outbox", testOutbox},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var ctx = context.Background()

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkLedger asserts the balance equals the sum of the ledger and is not
// below what is held.
func checkLedger(t *testing.T, s storage.Store, user string) storage.Balance {
	t.Helper()
	b, err := s.GetBalance(ctx, user)
	must(t, err)
	es, err := s.ListLedger(ctx, user, 10000)
	must(t, err)
	var sum int64
	for _, e := range es {
		sum += e.AmountMicros
	}
	if sum != b.BalanceMicros {
		t.Fatalf("ledger sums to %d but balance is %d", sum, b.BalanceMicros)
	}
	if b.HeldMicros < 0 || b.Available() < 0 {
		t.Fatalf("balance %d held %d: overspent", b.BalanceMicros, b.HeldMicros)
	}
	return b
}

func testUsers(t *testing.T, s storage.Store) {
	must(t, s.UpsertUser(ctx, storage.User{ID: "u1", Org: "o1", Tier: "trial"}))
	must(t, s.UpsertUser(ctx, storage.User{ID: "u1", Org: "o1", Tier: "professional"}))
	u, err := s.GetUser(ctx, "u1")
	must(t, err)
	if u.Tier != "professional" || u.Org != "o1" || u.CreatedAt.IsZero() {
		t.Fatalf("%+v", u)
	}
	if _, err := s.GetUser(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing user: %v", err)
	}
}

func testCreditsIdempotent(t *testing.T, s storage.Store) {
	b, err := s.GetBalance(ctx, "u")
	must(t, err)
	if b.BalanceMicros != 0 {
		t.Fatalf("new user has %d", b.BalanceMicros)
	}
	e, created, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 5_000_000, Kind: storage.KindPurchase, Key: "pay-1", Note: "card"})
	must(t, err)
	if !created || e.BalanceAfter != 5_000_000 || e.ID == 0 {
		t.Fatalf("%+v %v", e, created)
	}
	again, created, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 5_000_000, Kind: storage.KindPurchase, Key: "pay-1"})
	must(t, err)
	if created || again.ID != e.ID || again.BalanceAfter != 5_000_000 {
		t.Fatalf("replay changed something: %+v %v", again, created)
	}
	if _, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 7, Kind: storage.KindPurchase, Key: "pay-1"}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("same key, other amount: %v", err)
	}
	must(t, s.Reserve(ctx, storage.Hold{ID: "r1", User: "u", AmountMicros: 4_000_000, ExpiresAt: time.Now().Add(time.Hour)}))
	// A debit may not take the balance below what is held.
	if _, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: -2_000_000, Kind: storage.KindAdjust, Key: "adj-1"}); !errors.Is(err, storage.ErrInsufficientCredits) {
		t.Fatalf("overdraw: %v", err)
	}
	if _, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: -1_000_000, Kind: storage.KindAdjust, Key: "adj-2"}); err != nil {
		t.Fatal(err)
	}
	b = checkLedger(t, s, "u")
	if b.BalanceMicros != 4_000_000 || b.HeldMicros != 4_000_000 {
		t.Fatalf("%+v", b)
	}
	es, _ := s.ListLedger(ctx, "u", 10)
	if len(es) != 2 || es[0].Key != "adj-2" {
		t.Fatalf("ledger %+v", es)
	}
}

func testReserveSettleRelease(t *testing.T, s storage.Store) {
	_, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 1_000_000, Kind: storage.KindGrant, Key: "g"})
	must(t, err)
	exp := time.Now().Add(time.Minute)
	must(t, s.Reserve(ctx, storage.Hold{ID: "a", User: "u", AmountMicros: 600_000, ExpiresAt: exp}))
	must(t, s.Reserve(ctx, storage.Hold{ID: "a", User: "u", AmountMicros: 600_000, ExpiresAt: exp})) // same hold: not twice
	if err := s.Reserve(ctx, storage.Hold{ID: "b", User: "u", AmountMicros: 500_000, ExpiresAt: exp}); !errors.Is(err, storage.ErrInsufficientCredits) {
		t.Fatalf("over-reserve: %v", err)
	}
	if _, err := s.GetHold(ctx, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("a refused hold was kept")
	}
	b := checkLedger(t, s, "u")
	if b.HeldMicros != 600_000 {
		t.Fatalf("held %d", b.HeldMicros)
	}
	e, created, err := s.Settle(ctx, storage.Settlement{HoldID: "a", User: "u", CostMicros: 123_457,
		Usage: storage.Usage{Model: "gpt-4o", Provider: "openai", TokensIn: 10, TokensOut: 20, LatencyMS: 42}})
	must(t, err)
	if !created || e.AmountMicros != -123_457 || e.BalanceAfter != 876_543 || e.Kind != storage.KindUsage {
		t.Fatalf("%+v", e)
	}
	b = checkLedger(t, s, "u")
	if b.BalanceMicros != 876_543 || b.HeldMicros != 0 {
		t.Fatalf("%+v", b)
	}
	us, err := s.ListUsage(ctx, storage.UsageQuery{User: "u"})
	must(t, err)
	if len(us) != 1 || us[0].RequestID != "a" || us[0].CostMicros != 123_457 || us[0].TokensOut != 20 || us[0].Model != "gpt-4o" {
		t.Fatalf("usage %+v", us)
	}
	// Release frees without charging; releasing twice is harmless.
	must(t, s.Reserve(ctx, storage.Hold{ID: "c", User: "u", AmountMicros: 800_000, ExpiresAt: exp}))
	must(t, s.Release(ctx, "c"))
	must(t, s.Release(ctx, "c"))
	b = checkLedger(t, s, "u")
	if b.BalanceMicros != 876_543 || b.HeldMicros != 0 {
		t.Fatalf("%+v", b)
	}
	// A zero-cost request (BYOK) settles without a balance row.
	must(t, s.Reserve(ctx, storage.Hold{ID: "z", User: "byok-user", AmountMicros: 0, ExpiresAt: exp}))
	if _, _, err := s.Settle(ctx, storage.Settlement{HoldID: "z", User: "byok-user", Usage: storage.Usage{Model: "m", Provider: "p", BYOK: true}}); err != nil {
		t.Fatal(err)
	}
	checkLedger(t, s, "byok-user")
}

func testSettleIdempotent(t *testing.T, s storage.Store) {
	_, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 1_000, Kind: storage.KindGrant, Key: "g"})
	must(t, err)
	must(t, s.Reserve(ctx, storage.Hold{ID: "r", User: "u", AmountMicros: 500, ExpiresAt: time.Now().Add(time.Minute)}))
	st := storage.Settlement{HoldID: "r", User: "u", CostMicros: 300, Usage: storage.Usage{Model: "m", Provider: "p"}}
	_, created, err := s.Settle(ctx, st)
	must(t, err)
	again, created2, err := s.Settle(ctx, st)
	must(t, err)
	if !created || created2 || again.AmountMicros != -300 {
		t.Fatalf("%v %v %+v", created, created2, again)
	}
	b := checkLedger(t, s, "u")
	if b.BalanceMicros != 700 || b.HeldMicros != 0 {
		t.Fatalf("%+v", b)
	}
	if us, _ := s.ListUsage(ctx, storage.UsageQuery{User: "u"}); len(us) != 1 {
		t.Fatalf("%d usage records", len(us))
	}
	// Settling for another user under the same request id is a conflict.
	if _, _, err := s.Settle(ctx, storage.Settlement{HoldID: "r", User: "other", CostMicros: 300}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("%v", err)
	}
}

func testExpireHolds(t *testing.T, s storage.Store) {
	_, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 1_000, Kind: storage.KindGrant, Key: "g"})
	must(t, err)
	now := time.Now()
	must(t, s.Reserve(ctx, storage.Hold{ID: "old", User: "u", AmountMicros: 300, ExpiresAt: now.Add(-time.Second)}))
	must(t, s.Reserve(ctx, storage.Hold{ID: "new", User: "u", AmountMicros: 200, ExpiresAt: now.Add(time.Hour)}))
	n, err := s.ExpireHolds(ctx, now)
	must(t, err)
	if n != 1 {
		t.Fatalf("expired %d", n)
	}
	b := checkLedger(t, s, "u")
	if b.HeldMicros != 200 || b.BalanceMicros != 1_000 {
		t.Fatalf("%+v", b)
	}
	// A late settlement of an expired hold still charges once, exactly.
	_, created, err := s.Settle(ctx, storage.Settlement{HoldID: "old", User: "u", CostMicros: 250})
	must(t, err)
	b = checkLedger(t, s, "u")
	if !created || b.BalanceMicros != 750 || b.HeldMicros != 200 {
		t.Fatalf("%+v", b)
	}
	// A late settlement of more than is available (its hold gone) charges
	// what is available and no more: the balance is never overspent.
	must(t, s.Reserve(ctx, storage.Hold{ID: "gone", User: "u", AmountMicros: 500, ExpiresAt: now.Add(-time.Second)}))
	n, err = s.ExpireHolds(ctx, now)
	must(t, err)
	e, created, err := s.Settle(ctx, storage.Settlement{HoldID: "gone", User: "u", CostMicros: 900})
	must(t, err)
	b = checkLedger(t, s, "u")
	if n != 1 || !created || e.AmountMicros != -550 || b.BalanceMicros != 200 || b.HeldMicros != 200 {
		t.Fatalf("expired %d, %+v, %+v", n, e, b)
	}
	// Settling it again changes nothing and returns the first settlement.
	again, created, err := s.Settle(ctx, storage.Settlement{HoldID: "gone", User: "u", CostMicros: 900})
	must(t, err)
	if created || again.AmountMicros != -550 || again.ID != e.ID {
		t.Fatalf("%v %+v", created, again)
	}
}

// 200 goroutines reserve 1 credit each against a balance of 100.
func testConcurrentReserves(t *testing.T, s storage.Store) {
	const credit = 1_000_000
	_, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 100 * credit, Kind: storage.KindPurchase, Key: "p"})
	must(t, err)
	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("req-%d", i)
			err := s.Reserve(ctx, storage.Hold{ID: id, User: "u", AmountMicros: credit, ExpiresAt: time.Now().Add(time.Hour)})
			switch {
			case err == nil:
				ok.Add(1)
				if _, _, err := s.Settle(ctx, storage.Settlement{HoldID: id, User: "u", CostMicros: credit, Usage: storage.Usage{Model: "m", Provider: "p"}}); err != nil {
					errs <- err
				}
			case errors.Is(err, storage.ErrInsufficientCredits):
				refused.Add(1)
			default:
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ok.Load() != 100 || refused.Load() != 100 {
		t.Fatalf("%d reserved, %d refused; want 100 and 100", ok.Load(), refused.Load())
	}
	b := checkLedger(t, s, "u")
	if b.BalanceMicros != 0 || b.HeldMicros != 0 {
		t.Fatalf("%+v", b)
	}
	us, err := s.ListUsage(ctx, storage.UsageQuery{User: "u", Limit: 1000})
	must(t, err)
	var cost int64
	for _, u := range us {
		cost += u.CostMicros
	}
	if len(us) != 100 || cost != 100*credit {
		t.Fatalf("%d usage records costing %d", len(us), cost)
	}
}

func testConcurrentSettle(t *testing.T, s storage.Store) {
	_, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 1_000, Kind: storage.KindGrant, Key: "g"})
	must(t, err)
	must(t, s.Reserve(ctx, storage.Hold{ID: "r", User: "u", AmountMicros: 1_000, ExpiresAt: time.Now().Add(time.Minute)}))
	var created atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, c, err := s.Settle(ctx, storage.Settlement{HoldID: "r", User: "u", CostMicros: 400})
			if err != nil {
				t.Error(err)
			}
			if c {
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	b := checkLedger(t, s, "u")
	if created.Load() != 1 || b.BalanceMicros != 600 || b.HeldMicros != 0 {
		t.Fatalf("%d settlements, %+v", created.Load(), b)
	}
}

func testUsage(t *testing.T, s storage.Store) {
	base := time.Date(2026, 1, 10, 12, 0, 0, 0, time.UTC) // far from midnight: one day per group
	for i := 0; i < 5; i++ {
		c, err := s.RecordUsage(ctx, storage.Usage{RequestID: fmt.Sprint("q", i), User: []string{"a", "b"}[i%2], Model: "m", Provider: "p",
			TokensIn: int64(i), CostMicros: int64(i * 10), Estimated: i == 3, BYOK: i == 4, CreatedAt: base.Add(time.Duration(i) * time.Minute)})
		must(t, err)
		if !c {
			t.Fatal("not created")
		}
	}
	if c, err := s.RecordUsage(ctx, storage.Usage{RequestID: "q0", User: "a", Model: "m", Provider: "p"}); err != nil || c {
		t.Fatalf("duplicate usage: %v %v", c, err)
	}
	all, err := s.ListUsage(ctx, storage.UsageQuery{})
	must(t, err)
	if len(all) != 5 || all[0].RequestID != "q4" || !all[0].BYOK || !all[1].Estimated {
		t.Fatalf("%+v", all)
	}
	if !all[0].CreatedAt.Equal(base.Add(4 * time.Minute)) {
		t.Fatalf("time %v", all[0].CreatedAt)
	}
	a, err := s.ListUsage(ctx, storage.UsageQuery{User: "a", Since: base.Add(time.Minute), Limit: 1})
	must(t, err)
	if len(a) != 1 || a[0].RequestID != "q4" {
		t.Fatalf("%+v", a)
	}
	w, err := s.ListUsage(ctx, storage.UsageQuery{Since: base.Add(time.Minute), Until: base.Add(3 * time.Minute)})
	must(t, err)
	if len(w) != 2 {
		t.Fatalf("window %d", len(w))
	}
	// Pages: newest first, each after the last of the previous page.
	p1, _ := s.ListUsage(ctx, storage.UsageQuery{Limit: 2})
	p2, _ := s.ListUsage(ctx, storage.UsageQuery{Limit: 2, Before: p1[1].RequestID})
	if len(p1) != 2 || len(p2) != 2 || p1[0].RequestID != "q4" || p2[0].RequestID != "q2" || p2[1].RequestID != "q1" {
		t.Fatalf("pages %v %v", p1, p2)
	}
	spent, err := s.SpentSince(ctx, "a", base, base.Add(time.Hour))
	must(t, err)
	if spent != 0+20+40 {
		t.Fatalf("spent %d", spent)
	}
	_, err = s.RecordUsage(ctx, storage.Usage{RequestID: "other-day", User: "a", Model: "m2", Provider: "p", TokensIn: 1, CostMicros: 5, CreatedAt: base.Add(-48 * time.Hour)})
	must(t, err)
	sum, err := s.SummarizeUsage(ctx, storage.UsageQuery{User: "a"})
	must(t, err)
	if len(sum) != 2 || sum[0].Model != "m2" || sum[1].Requests != 3 || sum[1].CostMicros != 60 || sum[1].TokensIn != 0+2+4 {
		t.Fatalf("summary %+v", sum)
	}
	if d := sum[1].Day; d.Hour() != 0 || d.Minute() != 0 || !d.Equal(base.Add(4*time.Minute).UTC().Truncate(24*time.Hour)) {
		t.Fatalf("day %v", d)
	}
	if m, _ := s.ListUsage(ctx, storage.UsageQuery{Model: "m2"}); len(m) != 1 {
		t.Fatalf("model filter %v", m)
	}
}

func testAPIKeys(t *testing.T, s storage.Store) {
	k := storage.APIKey{ID: "k1", Hash: "h1", Prefix: "sk-llm-ab", Owner: "u", Name: "ci", Scopes: []string{"chat", "models"}}
	must(t, s.CreateAPIKey(ctx, k))
	if err := s.CreateAPIKey(ctx, storage.APIKey{ID: "k2", Hash: "h1", Owner: "v"}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("duplicate hash: %v", err)
	}
	must(t, s.CreateAPIKey(ctx, storage.APIKey{ID: "k3", Hash: "h3", Owner: "v"}))
	got, err := s.GetAPIKeyByHash(ctx, "h1")
	must(t, err)
	if got.Owner != "u" || len(got.Scopes) != 2 || got.RevokedAt != nil {
		t.Fatalf("%+v", got)
	}
	if ks, _ := s.ListAPIKeys(ctx, "u"); len(ks) != 1 {
		t.Fatalf("%+v", ks)
	}
	if ks, _ := s.ListAPIKeys(ctx, ""); len(ks) != 2 {
		t.Fatalf("%+v", ks)
	}
	if err := s.RevokeAPIKey(ctx, "v", "k1", time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("revoked another's key: %v", err)
	}
	must(t, s.RevokeAPIKey(ctx, "u", "k1", time.Now()))
	got, _ = s.GetAPIKeyByHash(ctx, "h1")
	if got.RevokedAt == nil {
		t.Fatal("not revoked")
	}
	if _, err := s.GetAPIKeyByHash(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
}

func testBYOK(t *testing.T, s storage.Store) {
	k := storage.BYOKKey{ID: "b1", Owner: "u", Provider: "openai", Name: "mine", Ciphertext: "v1:k1:abc", KeyID: "k1"}
	must(t, s.PutBYOKKey(ctx, k))
	k.Ciphertext, k.KeyID = "v1:k2:def", "k2"
	must(t, s.PutBYOKKey(ctx, k)) // rewrap
	if err := s.PutBYOKKey(ctx, storage.BYOKKey{ID: "b1", Owner: "intruder", Provider: "openai", Ciphertext: "x"}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("overwrote another's key: %v", err)
	}
	ks, err := s.ListBYOKKeys(ctx, "u")
	must(t, err)
	if len(ks) != 1 || ks[0].Ciphertext != "v1:k2:def" || ks[0].Status != "active" {
		t.Fatalf("%+v", ks)
	}
	must(t, s.PutBYOKKey(ctx, storage.BYOKKey{ID: "b2", Owner: "v", Provider: "groq", Ciphertext: "gAAAAA-legacy", KeyID: "legacy-fernet"}))
	if c, err := s.CountBYOKKeys(ctx); err != nil || c["k2"] != 1 || c["legacy-fernet"] != 1 {
		t.Fatalf("counts %v %v", c, err)
	}
	must(t, s.TouchBYOKKey(ctx, "b1", time.Now()))
	ks, _ = s.ListBYOKKeys(ctx, "u")
	if ks[0].LastUsed == nil {
		t.Fatal("not touched")
	}
	if err := s.DeleteBYOKKey(ctx, "intruder", "b1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	must(t, s.DeleteBYOKKey(ctx, "u", "b1"))
	if ks, _ := s.ListBYOKKeys(ctx, "u"); len(ks) != 0 {
		t.Fatal("not deleted")
	}
}

func testHealth(t *testing.T, s storage.Store) {
	now := time.Now().Truncate(time.Millisecond)
	must(t, s.SaveHealth(ctx, storage.HealthSnapshot{Provider: "openai", Deployment: "d", State: "up", LatencyMS: 10, LastCheck: now}))
	must(t, s.SaveHealth(ctx, storage.HealthSnapshot{Provider: "openai", Deployment: "d", State: "down", ErrorCount: 3, LastCheck: now}))
	hs, err := s.ListHealth(ctx)
	must(t, err)
	if len(hs) != 1 || hs[0].State != "down" || hs[0].ErrorCount != 3 || !hs[0].LastCheck.Equal(now) {
		t.Fatalf("%+v", hs)
	}
}

func testOutbox(t *testing.T, s storage.Store) {
	for i := 0; i < 3; i++ {
		must(t, s.Enqueue(ctx, storage.OutboxMessage{Topic: "lago", Key: fmt.Sprint("e", i), Payload: []byte(fmt.Sprintf(`{"n":%d}`, i))}))
	}
	must(t, s.Enqueue(ctx, storage.OutboxMessage{Topic: "lago", Key: "e0", Payload: []byte(`{"dup":true}`)}))
	now := time.Now()
	got, err := s.ClaimOutbox(ctx, "lago", 2, time.Minute, now)
	must(t, err)
	if len(got) != 2 || string(got[0].Payload) != `{"n":0}` || got[0].Attempts != 1 {
		t.Fatalf("%+v", got)
	}
	rest, err := s.ClaimOutbox(ctx, "lago", 10, time.Minute, now)
	must(t, err)
	if len(rest) != 1 || rest[0].Key != "e2" {
		t.Fatalf("leased messages claimed again: %+v", rest)
	}
	must(t, s.AckOutbox(ctx, []int64{got[0].ID}, now))
	later, err := s.ClaimOutbox(ctx, "lago", 10, time.Minute, now.Add(2*time.Minute))
	must(t, err)
	if len(later) != 2 || later[0].Key != "e1" || later[0].Attempts != 2 {
		t.Fatalf("after lease: %+v", later)
	}
	if n, err := s.OutboxDepth(ctx, "lago"); err != nil || n != 2 {
		t.Fatalf("depth %d %v", n, err)
	}
	// A failed delivery gives the messages back at once.
	must(t, s.UnclaimOutbox(ctx, []int64{later[0].ID, later[1].ID}))
	again, err := s.ClaimOutbox(ctx, "lago", 10, time.Minute, now.Add(2*time.Minute))
	must(t, err)
	if len(again) != 2 || again[0].Attempts != 3 {
		t.Fatalf("after unclaim: %+v", again)
	}
	// A settlement enqueues its metering event in the same transaction.
	_, _, err = s.AddCredits(ctx, storage.LedgerEntry{User: "m", AmountMicros: 10, Kind: storage.KindGrant, Key: "g-m"})
	must(t, err)
	must(t, s.Reserve(ctx, storage.Hold{ID: "rq", User: "m", AmountMicros: 5, ExpiresAt: now.Add(time.Minute)}))
	st := storage.Settlement{HoldID: "rq", User: "m", CostMicros: 5, Outbox: &storage.OutboxMessage{Topic: "lago", Key: "rq", Payload: []byte(`{}`)}}
	_, _, err = s.Settle(ctx, st)
	must(t, err)
	_, _, err = s.Settle(ctx, st)
	must(t, err)
	if n, _ := s.OutboxDepth(ctx, "lago"); n != 3 {
		t.Fatalf("depth after settle %d", n)
	}
}
