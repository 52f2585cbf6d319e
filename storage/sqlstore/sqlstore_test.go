package sqlstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return openSQLite(t) })
}

// The gateway's SQLite store keeps holds in memory: the same behaviour.
func TestSQLiteExclusiveConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		s, err := OpenSQLiteExclusive(context.Background(), filepath.Join(t.TempDir(), "llmgate.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestSQLiteExclusiveRefusesASecondOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "llmgate.db")
	s, err := OpenSQLiteExclusive(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSQLiteExclusive(context.Background(), path); err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("a second owner of one SQLite file: %v", err)
	}
	// Tools that do not place holds may still open it.
	tool, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	_ = tool.Close()
	_ = s.Close()
	again, err := OpenSQLiteExclusive(context.Background(), path)
	if err != nil {
		t.Fatalf("after the owner closed: %v", err)
	}
	_ = again.Close()
}

func TestPostgresConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store { return openPostgres(t) })
}

func openSQLite(t testing.TB) *Store {
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "llmgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// openPostgres gives each test its own schema, dropped afterwards.
func openPostgres(t testing.TB) *Store {
	dsn := storetest.PostgresURL(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "llmgate_test_" + hex.EncodeToString(b)
	s, err := OpenPostgres(dsn, PostgresOptions{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
			_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
			_ = conn.Close(context.Background())
		}
		_ = s.Close()
	})
	return s
}

func TestMigrationsAreIdempotent(t *testing.T) {
	s := openSQLite(t)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := openPostgres(t)
	if err := p.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestBadDSNNeverShowsPassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:hunter2secret@host:notaport/db",
		"host=x port=banana password=hunter2secret",
	} {
		_, err := OpenPostgres(dsn, PostgresOptions{})
		if err == nil || !strings.Contains(err.Error(), "does not parse") {
			t.Fatalf("%q: %v", dsn, err)
		}
		if strings.Contains(err.Error(), "hunter2secret") {
			t.Fatalf("password in error: %v", err)
		}
	}
}

func TestUnreachablePostgresIsUnavailableThenRecovers(t *testing.T) {
	// Nothing listens on port 1: the pool is made, Ping fails as unavailable.
	s, err := OpenPostgres("postgres://u:hunter2secret@127.0.0.1:1/db?connect_timeout=1", PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), storage.ErrUnavailable.Error()) || strings.Contains(err.Error(), "hunter2secret") {
		t.Fatalf("%v", err)
	}
}

// Credits another process adds (caddy llm-import beside a running gateway)
// reach the gateway's cached balance within balanceTTL; the gateway's own
// debits are seen at once.
func TestSQLiteExclusiveSeesOtherWritersCredits(t *testing.T) {
	old := balanceTTL
	balanceTTL = 200 * time.Millisecond
	defer func() { balanceTTL = old }()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "llmgate.db")
	gw, err := OpenSQLiteExclusive(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	tool, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	exp := time.Now().Add(time.Hour)
	if _, _, err := gw.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 100, Kind: storage.KindPurchase, Key: "p1"}); err != nil {
		t.Fatal(err)
	}
	if err := gw.Reserve(ctx, storage.Hold{ID: "a", User: "u", AmountMicros: 100, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := gw.Settle(ctx, storage.Settlement{HoldID: "a", User: "u", CostMicros: 100}); err != nil {
		t.Fatal(err)
	}
	// Its own debit is seen at once: nothing left.
	if err := gw.Reserve(ctx, storage.Hold{ID: "b", User: "u", AmountMicros: 1, ExpiresAt: exp}); !errors.Is(err, storage.ErrInsufficientCredits) {
		t.Fatalf("after spending everything: %v", err)
	}
	if _, _, err := tool.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 50, Kind: storage.KindImport, Key: "imp"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := gw.Reserve(ctx, storage.Hold{ID: "c", User: "u", AmountMicros: 50, ExpiresAt: exp})
		if err == nil {
			break
		}
		if !errors.Is(err, storage.ErrInsufficientCredits) || time.Now().After(deadline) {
			t.Fatalf("the other process's credits never showed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := gw.Reserve(ctx, storage.Hold{ID: "d", User: "u", AmountMicros: 1, ExpiresAt: exp}); !errors.Is(err, storage.ErrInsufficientCredits) {
		t.Fatalf("overspent: %v", err)
	}
}

// A hold kept in memory whose settlement is under way does not expire: an
// expiry then would free credit the settlement is about to take.
func TestSettlingMemoryHoldDoesNotExpire(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLiteExclusive(ctx, filepath.Join(t.TempDir(), "llmgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 100, Kind: storage.KindPurchase, Key: "p"}); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Second)
	if err := s.Reserve(ctx, storage.Hold{ID: "r", User: "u", AmountMicros: 100, ExpiresAt: past}); err != nil {
		t.Fatal(err)
	}
	if !s.mem.claim("r", "u") { // as Settle does before its transaction
		t.Fatal("no hold to claim")
	}
	if n, err := s.ExpireHolds(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("a settling hold expired: %d %v", n, err)
	}
	if err := s.Reserve(ctx, storage.Hold{ID: "other", User: "u", AmountMicros: 1, ExpiresAt: time.Now().Add(time.Hour)}); !errors.Is(err, storage.ErrInsufficientCredits) {
		t.Fatalf("the settling hold's credit was given away: %v", err)
	}
	s.mem.unclaim("r") // its settlement failed: it may expire again
	if n, err := s.ExpireHolds(ctx, time.Now()); err != nil || n != 1 {
		t.Fatalf("expired %d %v", n, err)
	}
}

// Closing the SQLite store while writes are under way answers every one of
// them (committed, or refused as unavailable); none waits forever.
func TestSQLiteCloseAnswersEveryWrite(t *testing.T) {
	for round := 0; round < 20; round++ {
		s := openSQLite(t)
		ctx := context.Background()
		var wg sync.WaitGroup
		for g := 0; g < 20; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; ; i++ {
					_, _, err := s.AddCredits(ctx, storage.LedgerEntry{User: "u", AmountMicros: 1, Kind: storage.KindPurchase, Key: fmt.Sprint(g, "-", i)})
					if err != nil {
						if !errors.Is(err, storage.ErrUnavailable) && !strings.Contains(err.Error(), "closed") {
							t.Errorf("after close: %v", err)
						}
						return
					}
				}
			}(g)
		}
		time.Sleep(5 * time.Millisecond)
		_ = s.Close()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("a write queued at close was never answered")
		}
	}
}
