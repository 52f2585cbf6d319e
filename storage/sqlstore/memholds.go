package sqlstore

import (
	"context"
	"hash/maphash"
	"sync"
	"time"

	"github.com/llmgate/llmgate/storage"
)

// memHolds keeps holds in memory instead of in llm_holds: the SQLite store
// of a gateway that owns its database file alone (OpenSQLiteExclusive). A
// hold is a reservation, not money: it never outlives the process that
// placed it (a crashed process's holds are gone with it, which is what the
// sweeper does for PostgreSQL), so it needs no write, and a request then
// costs one SQLite transaction (its settlement) instead of two.
//
// Available credit is the balance in the database minus the holds in
// memory. Placing a hold reads the balance and adds the hold under the
// user's lock, and so does every debit that checks the balance (AddCredits),
// so none can slip between. A settlement commits its debit (never more than
// its hold) before its hold leaves memory, so a concurrent reader sees at
// worst the hold and the debit at once: less available, never more.
//
// Balances read for holds are cached too: this process makes every debit,
// and each commit of one hands its balance (with its ledger id, so a late
// answer never overwrites a newer one) to the cache after the commit. A
// cached balance is re-read after balanceTTL, which is how credits added by
// another process (caddy llm-import) show up.
type memHolds struct {
	mu    sync.Mutex
	holds map[string]*memHold
	held  map[string]int64 // per user
	bals  map[string]cachedBalance
	seed  maphash.Seed
	users [64]sync.Mutex // striped per-user locks
}

type memHold struct {
	storage.Hold
	// settling: its settlement is under way, so it does not expire (an
	// expiry then would free credit its settlement is about to take).
	settling bool
}

type cachedBalance struct {
	balance, dbHeld int64
	seq             int64 // ledger id of the last entry in it
	at              time.Time
}

// balanceTTL: how old a cached balance may be (a variable for tests).
var balanceTTL = 2 * time.Second

func newMemHolds() *memHolds {
	return &memHolds{holds: map[string]*memHold{}, held: map[string]int64{}, bals: map[string]cachedBalance{}, seed: maphash.MakeSeed()}
}

// balance is the cached balance of user, if fresh.
func (m *memHolds) balance(user string, now time.Time) (cachedBalance, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.bals[user]
	if !ok || now.Sub(b.at) > balanceTTL {
		return b, false
	}
	return b, true
}

// noteBalance records a balance unless a newer one (by ledger id) is known.
func (m *memHolds) noteBalance(user string, b cachedBalance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.bals[user]; ok && cur.seq > b.seq {
		return
	}
	if len(m.bals) > 100_000 {
		clear(m.bals) // bounded: it is only a cache
	}
	m.bals[user] = b
}

func (m *memHolds) userLock(user string) *sync.Mutex {
	return &m.users[maphash.String(m.seed, user)%uint64(len(m.users))]
}

func (m *memHolds) get(id string) (storage.Hold, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.holds[id]
	if !ok {
		return storage.Hold{}, false
	}
	return h.Hold, true
}

// claim marks a user's hold as settling; false when there is none.
func (m *memHolds) claim(id, user string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.holds[id]
	if !ok || h.User != user {
		return false
	}
	h.settling = true
	return true
}

// unclaim lets a hold whose settlement failed expire again.
func (m *memHolds) unclaim(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.holds[id]; ok {
		h.settling = false
	}
}

func (m *memHolds) heldBy(user string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held[user]
}

func (m *memHolds) add(h storage.Hold) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holds[h.ID] = &memHold{Hold: h}
	m.held[h.User] += h.AmountMicros
}

// remove drops a hold; ok is false when there was none.
func (m *memHolds) remove(id string) (storage.Hold, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.holds[id]
	if !ok {
		return storage.Hold{}, false
	}
	delete(m.holds, id)
	if m.held[h.User] -= h.AmountMicros; m.held[h.User] == 0 {
		delete(m.held, h.User)
	}
	return h.Hold, true
}

func (m *memHolds) expire(now time.Time) int {
	m.mu.Lock()
	var ids []string
	for id, h := range m.holds {
		if !h.settling && !h.ExpiresAt.IsZero() && !h.ExpiresAt.After(now) {
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	n := 0
	for _, id := range ids {
		if _, ok := m.remove(id); ok {
			n++
		}
	}
	return n
}

// reserveMem places a hold in memory.
func (s *Store) reserveMem(ctx context.Context, h storage.Hold) error {
	m := s.mem
	l := m.userLock(h.User)
	l.Lock()
	defer l.Unlock()
	if _, ok := m.get(h.ID); ok {
		return nil // already held
	}
	if h.AmountMicros > 0 {
		now := time.Now()
		b, ok := m.balance(h.User, now)
		if !ok {
			var err error
			if b, err = s.readBalance(ctx, h.User, now); err != nil {
				return err
			}
		}
		if b.balance-b.dbHeld-m.heldBy(h.User) < h.AmountMicros {
			return storage.ErrInsufficientCredits
		}
	}
	m.add(h)
	return nil
}

// readBalance reads a user's balance with the id of its last ledger entry
// (one statement, one snapshot) into the cache.
func (s *Store) readBalance(ctx context.Context, user string, now time.Time) (cachedBalance, error) {
	b := cachedBalance{at: now}
	err := s.db.queryRow(ctx, `SELECT COALESCE((SELECT balance_micros FROM llm_balances WHERE user_id = $1), 0),
		COALESCE((SELECT held_micros FROM llm_balances WHERE user_id = $1), 0),
		COALESCE((SELECT MAX(id) FROM llm_ledger WHERE user_id = $1), 0)`, user).Scan(&b.balance, &b.dbHeld, &b.seq)
	if err != nil {
		return b, err
	}
	s.mem.noteBalance(user, b)
	return b, nil
}

// committed hands a committed ledger entry's balance to the cache.
func (s *Store) committed(e storage.LedgerEntry, dbHeld int64) {
	if s.mem != nil && e.ID != 0 {
		s.mem.noteBalance(e.User, cachedBalance{balance: e.BalanceAfter, dbHeld: dbHeld, seq: e.ID, at: time.Now()})
	}
}
