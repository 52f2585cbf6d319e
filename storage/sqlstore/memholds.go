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
type memHolds struct {
	mu    sync.Mutex
	holds map[string]storage.Hold
	held  map[string]int64 // per user
	seed  maphash.Seed
	users [64]sync.Mutex // striped per-user locks
}

func newMemHolds() *memHolds {
	return &memHolds{holds: map[string]storage.Hold{}, held: map[string]int64{}, seed: maphash.MakeSeed()}
}

func (m *memHolds) userLock(user string) *sync.Mutex {
	return &m.users[maphash.String(m.seed, user)%uint64(len(m.users))]
}

func (m *memHolds) get(id string) (storage.Hold, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.holds[id]
	return h, ok
}

func (m *memHolds) heldBy(user string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held[user]
}

func (m *memHolds) add(h storage.Hold) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.holds[h.ID] = h
	m.held[h.User] += h.AmountMicros
}

// remove drops a hold; ok is false when there was none.
func (m *memHolds) remove(id string) (storage.Hold, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.holds[id]
	if !ok {
		return h, false
	}
	delete(m.holds, id)
	if m.held[h.User] -= h.AmountMicros; m.held[h.User] == 0 {
		delete(m.held, h.User)
	}
	return h, true
}

func (m *memHolds) expire(now time.Time) int {
	m.mu.Lock()
	var ids []string
	for id, h := range m.holds {
		if !h.ExpiresAt.IsZero() && !h.ExpiresAt.After(now) {
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
		b, err := s.dbBalance(ctx, h.User)
		if err != nil {
			return err
		}
		if b.BalanceMicros-b.HeldMicros-m.heldBy(h.User) < h.AmountMicros {
			return storage.ErrInsufficientCredits
		}
	}
	m.add(h)
	return nil
}
