package sqlstore

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/llmgate/llmgate/storage"
)

// Store is a storage.Store over SQLite or PostgreSQL.
type Store struct {
	db      db
	dialect string
	schema  string
	now     func() time.Time
	// migrated is set once the schema is known to be current.
	migrated atomic.Bool
	// mem, when set, keeps holds in memory (see memHolds).
	mem *memHolds
	// unlock releases the exclusive lock of OpenSQLiteExclusive.
	unlock func()
}

var errNotFound = storage.ErrNotFound

var _ storage.Store = (*Store)(nil)

// Dialect is "sqlite" or "postgres".
func (s *Store) Dialect() string { return s.dialect }

func us(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func optUS(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.UnixMicro()
	return &v
}

func fromOptUS(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := fromUS(*v)
	return &t
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Ping checks the database answers and, the first time it does, applies
// the migrations.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.ping(ctx); err != nil {
		return err
	}
	if s.migrated.Load() {
		return nil
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	s.migrated.Store(true)
	return nil
}

// Close closes the connections.
func (s *Store) Close() error {
	err := s.db.close()
	if s.unlock != nil {
		s.unlock()
	}
	return err
}

// ---- users ----

func (s *Store) UpsertUser(ctx context.Context, u storage.User) error {
	if u.ID == "" {
		return errors.New("storage: user id is empty")
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = s.now()
	}
	_, err := s.db.exec(ctx, `INSERT INTO llm_users (id, org, tier, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET org = excluded.org, tier = excluded.tier`, u.ID, u.Org, u.Tier, us(u.CreatedAt))
	return err
}

func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	u := storage.User{ID: id}
	var created int64
	err := s.db.queryRow(ctx, `SELECT org, tier, created_at FROM llm_users WHERE id = $1`, id).Scan(&u.Org, &u.Tier, &created)
	u.CreatedAt = fromUS(created)
	return u, err
}

// ---- money ----

func (s *Store) GetBalance(ctx context.Context, user string) (storage.Balance, error) {
	b, err := s.dbBalance(ctx, user)
	if s.mem != nil {
		b.HeldMicros += s.mem.heldBy(user)
	}
	return b, err
}

// dbBalance is the balance row, without holds kept in memory.
func (s *Store) dbBalance(ctx context.Context, user string) (storage.Balance, error) {
	b := storage.Balance{User: user}
	var upd int64
	err := s.db.queryRow(ctx, `SELECT balance_micros, held_micros, updated_at FROM llm_balances WHERE user_id = $1`, user).
		Scan(&b.BalanceMicros, &b.HeldMicros, &upd)
	if errors.Is(err, storage.ErrNotFound) {
		return b, nil // a user with no ledger yet has nothing
	}
	b.UpdatedAt = fromUS(upd)
	return b, err
}

const ledgerCols = `id, user_id, amount_micros, kind, idem_key, note, balance_after, created_at`

func scanLedger(r row) (storage.LedgerEntry, error) {
	var e storage.LedgerEntry
	var created int64
	err := r.Scan(&e.ID, &e.User, &e.AmountMicros, &e.Kind, &e.Key, &e.Note, &e.BalanceAfter, &created)
	e.CreatedAt = fromUS(created)
	return e, err
}

// insertLedger adds an entry, or reports created=false with the existing one.
func insertLedger(ctx context.Context, tx q, e *storage.LedgerEntry) (bool, error) {
	err := tx.queryRow(ctx, `INSERT INTO llm_ledger (user_id, amount_micros, kind, idem_key, note, balance_after, created_at)
		VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (idem_key) DO NOTHING RETURNING id`,
		e.User, e.AmountMicros, e.Kind, e.Key, e.Note, us(e.CreatedAt)).Scan(&e.ID)
	if errors.Is(err, storage.ErrNotFound) {
		prev, err := scanLedger(tx.queryRow(ctx, `SELECT `+ledgerCols+` FROM llm_ledger WHERE idem_key = $1`, e.Key))
		if err != nil {
			return false, err
		}
		if prev.User != e.User || prev.AmountMicros != e.AmountMicros || prev.Kind != e.Kind {
			return false, storage.ErrConflict
		}
		*e = prev
		return false, nil
	}
	return err == nil, err
}

func (s *Store) AddCredits(ctx context.Context, e storage.LedgerEntry) (storage.LedgerEntry, bool, error) {
	if e.User == "" || e.Key == "" || e.Kind == "" {
		return e, false, errors.New("storage: a ledger entry needs a user, a kind and a key")
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = s.now()
	}
	var memHeld int64
	if s.mem != nil && e.AmountMicros < 0 {
		// No hold may be placed between this check and the debit.
		l := s.mem.userLock(e.User)
		l.Lock()
		defer l.Unlock()
		memHeld = s.mem.heldBy(e.User)
	}
	created := false
	var dbHeld int64
	err := s.db.inTx(ctx, func(tx q) error {
		var err error
		if created, err = insertLedger(ctx, tx, &e); err != nil || !created {
			return err
		}
		var bal int64
		if e.AmountMicros >= 0 {
			err = tx.queryRow(ctx, `INSERT INTO llm_balances (user_id, balance_micros, held_micros, updated_at) VALUES ($1, $2, 0, $3)
				ON CONFLICT (user_id) DO UPDATE SET balance_micros = llm_balances.balance_micros + excluded.balance_micros, updated_at = excluded.updated_at
				RETURNING balance_micros, held_micros`, e.User, e.AmountMicros, us(e.CreatedAt)).Scan(&bal, &dbHeld)
		} else {
			err = tx.queryRow(ctx, `UPDATE llm_balances SET balance_micros = balance_micros + $2, updated_at = $3
				WHERE user_id = $1 AND balance_micros + $2 >= held_micros + $4 RETURNING balance_micros, held_micros`,
				e.User, e.AmountMicros, us(e.CreatedAt), memHeld).Scan(&bal, &dbHeld)
			if errors.Is(err, storage.ErrNotFound) {
				return storage.ErrInsufficientCredits
			}
		}
		if err != nil {
			return err
		}
		e.BalanceAfter = bal
		_, err = tx.exec(ctx, `UPDATE llm_ledger SET balance_after = $2 WHERE id = $1`, e.ID, bal)
		return err
	})
	if err != nil {
		return e, false, err
	}
	if created {
		s.committed(e, dbHeld)
	}
	return e, created, nil
}

func (s *Store) Reserve(ctx context.Context, h storage.Hold) error {
	if h.ID == "" || h.User == "" || h.AmountMicros < 0 {
		return errors.New("storage: a hold needs an id, a user and a non-negative amount")
	}
	if h.CreatedAt.IsZero() {
		h.CreatedAt = s.now()
	}
	if s.mem != nil {
		return s.reserveMem(ctx, h)
	}
	// A hold is a reservation, not money: on PostgreSQL its commit need not
	// wait for the WAL flush (about a millisecond on a disk). If PostgreSQL
	// crashes before the flush, the hold is lost and its settlement charges
	// no more than is available (Settle).
	if d, ok := s.db.(*pgDB); ok && h.AmountMicros > 0 {
		if handled, err := s.reservePG(ctx, d, h); handled {
			return err
		}
	}
	return s.db.inTx(ctx, func(tx q) error {
		var id string
		err := tx.queryRow(ctx, `INSERT INTO llm_holds (id, user_id, amount_micros, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (id) DO NOTHING RETURNING id`, h.ID, h.User, h.AmountMicros, us(h.ExpiresAt), us(h.CreatedAt)).Scan(&id)
		if errors.Is(err, storage.ErrNotFound) {
			return nil // already held
		}
		if err != nil || h.AmountMicros == 0 {
			return err
		}
		n, err := tx.exec(ctx, `UPDATE llm_balances SET held_micros = held_micros + $2, updated_at = $3
			WHERE user_id = $1 AND balance_micros - held_micros >= $2`, h.User, h.AmountMicros, us(h.CreatedAt))
		if err != nil {
			return err
		}
		if n == 0 {
			return storage.ErrInsufficientCredits
		}
		return nil
	})
}

func (s *Store) GetHold(ctx context.Context, id string) (storage.Hold, error) {
	if s.mem != nil {
		if h, ok := s.mem.get(id); ok {
			return h, nil
		}
	}
	h := storage.Hold{ID: id}
	var exp, created int64
	err := s.db.queryRow(ctx, `SELECT user_id, amount_micros, expires_at, created_at FROM llm_holds WHERE id = $1`, id).
		Scan(&h.User, &h.AmountMicros, &exp, &created)
	h.ExpiresAt, h.CreatedAt = fromUS(exp), fromUS(created)
	return h, err
}

// UsageKey is the ledger key of a settled request.
func UsageKey(requestID string) string { return "usage:" + requestID }

// errSettled rolls back a settlement whose ledger key is already used.
var errSettled = errors.New("already settled")

func (s *Store) Settle(ctx context.Context, st storage.Settlement) (storage.LedgerEntry, bool, error) {
	if st.HoldID == "" || st.User == "" || st.CostMicros < 0 {
		return storage.LedgerEntry{}, false, errors.New("storage: a settlement needs a hold id, a user and a non-negative cost")
	}
	now := s.now()
	if d, ok := s.db.(*pgDB); ok {
		if e, handled, err := s.settlePG(ctx, d, st, us(now)); handled {
			return e, err == nil, err
		}
	}
	key := UsageKey(st.HoldID)
	var e storage.LedgerEntry
	var dbHeld int64
	inMem := s.mem != nil && s.mem.claim(st.HoldID, st.User)
	err := s.db.inTx(ctx, func(tx q) error {
		var held int64
		covered := inMem // a hold kept in memory has no row
		if !inMem {
			err := tx.queryRow(ctx, `DELETE FROM llm_holds WHERE id = $1 AND user_id = $2 RETURNING amount_micros`, st.HoldID, st.User).Scan(&held)
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			covered = err == nil
		}
		cost := st.CostMicros
		if !covered && cost > 0 {
			// No hold covers it (it expired, or was lost with a database
			// crash): charge no more than is available, so the balance is
			// never overspent.
			var avail int64
			aerr := tx.queryRow(ctx, `SELECT balance_micros - held_micros FROM llm_balances WHERE user_id = $1`, st.User).Scan(&avail)
			if aerr != nil && !errors.Is(aerr, storage.ErrNotFound) {
				return aerr
			}
			if s.mem != nil {
				avail -= s.mem.heldBy(st.User)
			}
			cost = min(cost, max(0, avail))
		}
		var bal int64
		err := tx.queryRow(ctx, `INSERT INTO llm_balances (user_id, balance_micros, held_micros, updated_at) VALUES ($1, $2, 0, $4)
			ON CONFLICT (user_id) DO UPDATE SET balance_micros = llm_balances.balance_micros + excluded.balance_micros,
				held_micros = llm_balances.held_micros - $3, updated_at = excluded.updated_at
			RETURNING balance_micros, held_micros`, st.User, -cost, held, us(now)).Scan(&bal, &dbHeld)
		if err != nil {
			return err
		}
		// The ledger entry comes last, with its balance: a key already used
		// rolls everything back (see below).
		e = storage.LedgerEntry{User: st.User, AmountMicros: -cost, Kind: storage.KindUsage, Key: key, BalanceAfter: bal, CreatedAt: now}
		err = tx.queryRow(ctx, `INSERT INTO llm_ledger (user_id, amount_micros, kind, idem_key, note, balance_after, created_at)
			VALUES ($1, $2, $3, $4, '', $5, $6) ON CONFLICT (idem_key) DO NOTHING RETURNING id`,
			e.User, e.AmountMicros, e.Kind, e.Key, e.BalanceAfter, us(now)).Scan(&e.ID)
		if errors.Is(err, storage.ErrNotFound) {
			return errSettled
		}
		if err != nil {
			return err
		}
		u := st.Usage
		u.RequestID, u.User, u.CostMicros = st.HoldID, st.User, cost
		if u.CreatedAt.IsZero() {
			u.CreatedAt = now
		}
		if _, err = insertUsage(ctx, tx, u); err != nil {
			return err
		}
		if m := st.Outbox; m != nil {
			_, err = tx.exec(ctx, `INSERT INTO llm_outbox (topic, idem_key, payload, created_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (topic, idem_key) DO NOTHING`, m.Topic, m.Key, m.Payload, us(now))
		}
		return err
	})
	created := err == nil
	if errors.Is(err, errSettled) {
		// Settled before: the first settlement stands.
		prev, perr := s.GetLedgerEntry(ctx, key)
		if perr != nil {
			return e, false, perr
		}
		if prev.User != st.User || prev.Kind != storage.KindUsage {
			return e, false, storage.ErrConflict
		}
		e, err = prev, nil
	}
	if err != nil {
		if inMem {
			s.mem.unclaim(st.HoldID)
		}
		return e, false, err
	}
	if created {
		s.committed(e, dbHeld)
	}
	if inMem {
		s.mem.remove(st.HoldID) // after the commit: the debit is in before the hold goes
	}
	return e, created, nil
}

func (s *Store) Release(ctx context.Context, holdID string) error {
	if s.mem != nil {
		if _, ok := s.mem.remove(holdID); ok {
			return nil
		}
	}
	return s.db.inTx(ctx, func(tx q) error {
		var user string
		var held int64
		err := tx.queryRow(ctx, `DELETE FROM llm_holds WHERE id = $1 RETURNING user_id, amount_micros`, holdID).Scan(&user, &held)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		_, err = tx.exec(ctx, `UPDATE llm_balances SET held_micros = held_micros - $2, updated_at = $3 WHERE user_id = $1`, user, held, us(s.now()))
		return err
	})
}

func (s *Store) ExpireHolds(ctx context.Context, now time.Time) (int, error) {
	total := 0
	if s.mem != nil {
		total = s.mem.expire(now)
	}
	for {
		n := 0
		err := s.db.inTx(ctx, func(tx q) error {
			r, err := tx.query(ctx, `DELETE FROM llm_holds WHERE id IN (SELECT id FROM llm_holds WHERE expires_at <= $1 ORDER BY expires_at LIMIT 100)
				RETURNING user_id, amount_micros`, us(now))
			if err != nil {
				return err
			}
			type freed struct {
				user string
				amt  int64
			}
			var fs []freed
			for r.Next() {
				var f freed
				if err := r.Scan(&f.user, &f.amt); err != nil {
					r.Close()
					return err
				}
				fs = append(fs, f)
			}
			r.Close()
			if err := r.Err(); err != nil {
				return err
			}
			for _, f := range fs {
				if _, err := tx.exec(ctx, `UPDATE llm_balances SET held_micros = held_micros - $2, updated_at = $3 WHERE user_id = $1`, f.user, f.amt, us(now)); err != nil {
					return err
				}
			}
			n = len(fs)
			return nil
		})
		total += n
		if err != nil || n < 100 {
			return total, err
		}
	}
}

func (s *Store) GetLedgerEntry(ctx context.Context, key string) (storage.LedgerEntry, error) {
	return scanLedger(s.db.queryRow(ctx, `SELECT `+ledgerCols+` FROM llm_ledger WHERE idem_key = $1`, key))
}

func (s *Store) ListLedger(ctx context.Context, user string, limit int) ([]storage.LedgerEntry, error) {
	if limit <= 0 || limit > 10000 {
		limit = 100
	}
	r, err := s.db.query(ctx, `SELECT `+ledgerCols+` FROM llm_ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2`, user, limit)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []storage.LedgerEntry
	for r.Next() {
		e, err := scanLedger(r)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, r.Err()
}

// ---- usage ----

func insertUsage(ctx context.Context, tx q, u storage.Usage) (bool, error) {
	n, err := tx.exec(ctx, `INSERT INTO llm_usage (request_id, user_id, org, model, provider, tokens_in, tokens_out, cache_read_in, cache_write_in,
			cost_micros, latency_ms, byok, estimated, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (request_id) DO NOTHING`,
		u.RequestID, u.User, u.Org, u.Model, u.Provider, u.TokensIn, u.TokensOut, u.CacheReadIn, u.CacheWriteIn,
		u.CostMicros, u.LatencyMS, b2i(u.BYOK), b2i(u.Estimated), us(u.CreatedAt))
	return n == 1, err
}

func (s *Store) RecordUsage(ctx context.Context, u storage.Usage) (bool, error) {
	if u.RequestID == "" {
		return false, errors.New("storage: a usage record needs a request id")
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = s.now()
	}
	return insertUsage(ctx, s.db, u)
}

func (s *Store) ListUsage(ctx context.Context, uq storage.UsageQuery) ([]storage.Usage, error) {
	if uq.Limit <= 0 || uq.Limit > 10000 {
		uq.Limit = 100
	}
	until := us(uq.Until)
	if until == 0 {
		until = 1 << 62
	}
	r, err := s.db.query(ctx, `SELECT request_id, user_id, org, model, provider, tokens_in, tokens_out, cache_read_in, cache_write_in,
			cost_micros, latency_ms, byok, estimated, created_at
		FROM llm_usage WHERE ($1 = '' OR user_id = $1) AND created_at >= $2 AND created_at < $3 AND ($5 = '' OR model = $5)
			AND ($6 = '' OR created_at < (SELECT created_at FROM llm_usage WHERE request_id = $6)
				OR (created_at = (SELECT created_at FROM llm_usage WHERE request_id = $6) AND request_id < $6))
		ORDER BY created_at DESC, request_id DESC LIMIT $4`, uq.User, us(uq.Since), until, uq.Limit, uq.Model, uq.Before)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []storage.Usage
	for r.Next() {
		var u storage.Usage
		var byok, est, created int64
		if err := r.Scan(&u.RequestID, &u.User, &u.Org, &u.Model, &u.Provider, &u.TokensIn, &u.TokensOut, &u.CacheReadIn, &u.CacheWriteIn,
			&u.CostMicros, &u.LatencyMS, &byok, &est, &created); err != nil {
			return nil, err
		}
		u.BYOK, u.Estimated, u.CreatedAt = byok == 1, est == 1, fromUS(created)
		out = append(out, u)
	}
	return out, r.Err()
}

const usPerDay = 86_400_000_000

func (s *Store) SummarizeUsage(ctx context.Context, uq storage.UsageQuery) ([]storage.UsageSummary, error) {
	until := us(uq.Until)
	if until == 0 {
		until = 1 << 62
	}
	r, err := s.db.query(ctx, `SELECT created_at / 86400000000 AS day, model, count(*), sum(tokens_in), sum(tokens_out), sum(cost_micros)
		FROM llm_usage WHERE ($1 = '' OR user_id = $1) AND created_at >= $2 AND created_at < $3 AND ($4 = '' OR model = $4)
		GROUP BY created_at / 86400000000, model ORDER BY day, model`, uq.User, us(uq.Since), until, uq.Model)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []storage.UsageSummary
	for r.Next() {
		var u storage.UsageSummary
		var day int64
		if err := r.Scan(&day, &u.Model, &u.Requests, &u.TokensIn, &u.TokensOut, &u.CostMicros); err != nil {
			return nil, err
		}
		u.Day = fromUS(day * usPerDay)
		if day == 0 {
			u.Day = time.Unix(0, 0).UTC()
		}
		out = append(out, u)
	}
	return out, r.Err()
}

func (s *Store) SpentSince(ctx context.Context, user string, since, until time.Time) (int64, error) {
	var total int64
	err := s.db.queryRow(ctx, `SELECT COALESCE(sum(cost_micros), 0) FROM llm_usage WHERE user_id = $1 AND created_at >= $2 AND created_at < $3`,
		user, us(since), us(until)).Scan(&total)
	return total, err
}

// ---- API keys ----

const apiKeyCols = `id, hash, prefix, owner, name, scopes, created_at, revoked_at, last_used`

func scanAPIKey(r row) (storage.APIKey, error) {
	var k storage.APIKey
	var scopes string
	var created int64
	var revoked, used *int64
	err := r.Scan(&k.ID, &k.Hash, &k.Prefix, &k.Owner, &k.Name, &scopes, &created, &revoked, &used)
	if scopes != "" {
		k.Scopes = strings.Split(scopes, ",")
	}
	k.CreatedAt, k.RevokedAt, k.LastUsed = fromUS(created), fromOptUS(revoked), fromOptUS(used)
	return k, err
}

func (s *Store) CreateAPIKey(ctx context.Context, k storage.APIKey) error {
	if k.ID == "" || k.Hash == "" || k.Owner == "" {
		return errors.New("storage: an API key needs an id, a hash and an owner")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	n, err := s.db.exec(ctx, `INSERT INTO llm_api_keys (`+apiKeyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
		k.ID, k.Hash, k.Prefix, k.Owner, k.Name, strings.Join(k.Scopes, ","), us(k.CreatedAt), optUS(k.RevokedAt), optUS(k.LastUsed))
	if err == nil && n == 0 {
		return storage.ErrConflict
	}
	return err
}

func (s *Store) GetAPIKeyByHash(ctx context.Context, hash string) (storage.APIKey, error) {
	return scanAPIKey(s.db.queryRow(ctx, `SELECT `+apiKeyCols+` FROM llm_api_keys WHERE hash = $1`, hash))
}

func (s *Store) ListAPIKeys(ctx context.Context, owner string) ([]storage.APIKey, error) {
	r, err := s.db.query(ctx, `SELECT `+apiKeyCols+` FROM llm_api_keys WHERE ($1 = '' OR owner = $1) ORDER BY created_at, id`, owner)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []storage.APIKey
	for r.Next() {
		k, err := scanAPIKey(r)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, r.Err()
}

func (s *Store) RevokeAPIKey(ctx context.Context, owner, id string, at time.Time) error {
	n, err := s.db.exec(ctx, `UPDATE llm_api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE id = $1 AND ($2 = '' OR owner = $2)`, id, owner, us(at))
	if err == nil && n == 0 {
		return storage.ErrNotFound
	}
	return err
}

// ---- BYOK keys ----

func (s *Store) PutBYOKKey(ctx context.Context, k storage.BYOKKey) error {
	if k.ID == "" || k.Owner == "" || k.Provider == "" || k.Ciphertext == "" {
		return errors.New("storage: a BYOK key needs an id, an owner, a provider and ciphertext")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = s.now()
	}
	if k.Status == "" {
		k.Status = "active"
	}
	n, err := s.db.exec(ctx, `INSERT INTO llm_byok_keys (id, owner, provider, name, ciphertext, key_id, status, created_at, expires_at, last_used)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, ciphertext = excluded.ciphertext, key_id = excluded.key_id,
			status = excluded.status, expires_at = excluded.expires_at
		WHERE llm_byok_keys.owner = excluded.owner AND llm_byok_keys.provider = excluded.provider`,
		k.ID, k.Owner, k.Provider, k.Name, k.Ciphertext, k.KeyID, k.Status, us(k.CreatedAt), optUS(k.ExpiresAt), optUS(k.LastUsed))
	if err == nil && n == 0 {
		return storage.ErrConflict
	}
	return err
}

func (s *Store) ListBYOKKeys(ctx context.Context, owner string) ([]storage.BYOKKey, error) {
	r, err := s.db.query(ctx, `SELECT id, owner, provider, name, ciphertext, key_id, status, created_at, expires_at, last_used
		FROM llm_byok_keys WHERE ($1 = '' OR owner = $1) ORDER BY created_at, id`, owner)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []storage.BYOKKey
	for r.Next() {
		var k storage.BYOKKey
		var created int64
		var exp, used *int64
		if err := r.Scan(&k.ID, &k.Owner, &k.Provider, &k.Name, &k.Ciphertext, &k.KeyID, &k.Status, &created, &exp, &used); err != nil {
			return nil, err
		}
		k.CreatedAt, k.ExpiresAt, k.LastUsed = fromUS(created), fromOptUS(exp), fromOptUS(used)
		out = append(out, k)
	}
	return out, r.Err()
}

func (s *Store) DeleteBYOKKey(ctx context.Context, owner, id string) error {
	n, err := s.db.exec(ctx, `DELETE FROM llm_byok_keys WHERE id = $1 AND owner = $2`, id, owner)
	if err == nil && n == 0 {
		return storage.ErrNotFound
	}
	return err
}

func (s *Store) TouchBYOKKey(ctx context.Context, id string, at time.Time) error {
	_, err := s.db.exec(ctx, `UPDATE llm_byok_keys SET last_used = $2 WHERE id = $1`, id, us(at))
	return err
}

// ---- health ----

func (s *Store) SaveHealth(ctx context.Context, h storage.HealthSnapshot) error {
	if h.UpdatedAt.IsZero() {
		h.UpdatedAt = s.now()
	}
	_, err := s.db.exec(ctx, `INSERT INTO llm_health (provider, deployment, state, latency_ms, error_count, last_check, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (provider, deployment) DO UPDATE SET state = excluded.state, latency_ms = excluded.latency_ms,
			error_count = excluded.error_count, last_check = excluded.last_check, updated_at = excluded.updated_at`,
		h.Provider, h.Deployment, h.State, h.LatencyMS, h.ErrorCount, us(h.LastCheck), us(h.UpdatedAt))
	return err
}

func (s *Store) ListHealth(ctx context.Context) ([]storage.HealthSnapshot, error) {
	r, err := s.db.query(ctx, `SELECT provider, deployment, state, latency_ms, error_count, last_check, updated_at FROM llm_health ORDER BY provider, deployment`)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []storage.HealthSnapshot
	for r.Next() {
		var h storage.HealthSnapshot
		var lc, upd int64
		if err := r.Scan(&h.Provider, &h.Deployment, &h.State, &h.LatencyMS, &h.ErrorCount, &lc, &upd); err != nil {
			return nil, err
		}
		h.LastCheck, h.UpdatedAt = fromUS(lc), fromUS(upd)
		out = append(out, h)
	}
	return out, r.Err()
}

// ---- outbox ----

func (s *Store) Enqueue(ctx context.Context, m storage.OutboxMessage) error {
	if m.Topic == "" || m.Key == "" {
		return errors.New("storage: an outbox message needs a topic and a key")
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = s.now()
	}
	_, err := s.db.exec(ctx, `INSERT INTO llm_outbox (topic, idem_key, payload, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (topic, idem_key) DO NOTHING`, m.Topic, m.Key, m.Payload, us(m.CreatedAt))
	return err
}

func (s *Store) ClaimOutbox(ctx context.Context, topic string, n int, lease time.Duration, now time.Time) ([]storage.OutboxMessage, error) {
	if n <= 0 {
		n = 100
	}
	var out []storage.OutboxMessage
	err := s.db.inTx(ctx, func(tx q) error {
		out = out[:0]
		r, err := tx.query(ctx, `UPDATE llm_outbox SET locked_until = $3, attempts = attempts + 1
			WHERE id IN (SELECT id FROM llm_outbox WHERE topic = $1 AND sent_at IS NULL AND locked_until <= $2 ORDER BY id LIMIT $4)
				AND sent_at IS NULL AND locked_until <= $2
			RETURNING id, topic, idem_key, payload, attempts, created_at`, topic, us(now), us(now.Add(lease)), n)
		if err != nil {
			return err
		}
		defer r.Close()
		for r.Next() {
			var m storage.OutboxMessage
			var created int64
			if err := r.Scan(&m.ID, &m.Topic, &m.Key, &m.Payload, &m.Attempts, &created); err != nil {
				return err
			}
			m.CreatedAt = fromUS(created)
			out = append(out, m)
		}
		return r.Err()
	})
	return out, err
}

func (s *Store) AckOutbox(ctx context.Context, ids []int64, now time.Time) error {
	return s.db.inTx(ctx, func(tx q) error {
		for _, id := range ids {
			if _, err := tx.exec(ctx, `UPDATE llm_outbox SET sent_at = $2 WHERE id = $1`, id, us(now)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) OutboxDepth(ctx context.Context, topic string) (int64, error) {
	var n int64
	err := s.db.queryRow(ctx, `SELECT count(*) FROM llm_outbox WHERE topic = $1 AND sent_at IS NULL`, topic).Scan(&n)
	return n, err
}

func (s *Store) UnclaimOutbox(ctx context.Context, ids []int64) error {
	return s.db.inTx(ctx, func(tx q) error {
		for _, id := range ids {
			if _, err := tx.exec(ctx, `UPDATE llm_outbox SET locked_until = 0 WHERE id = $1 AND sent_at IS NULL`, id); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) CountBYOKKeys(ctx context.Context) (map[string]int64, error) {
	r, err := s.db.query(ctx, `SELECT key_id, count(*) FROM llm_byok_keys GROUP BY key_id`)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out := map[string]int64{}
	for r.Next() {
		var k string
		var n int64
		if err := r.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	return out, r.Err()
}
