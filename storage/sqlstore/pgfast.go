package sqlstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/llmgate/llmgate/storage"
)

// PostgreSQL fast paths for the two writes of every request. Each is one
// network round trip: on this kind of load a PostgreSQL statement costs
// more in wake-ups and round trips than in work, and the generic
// transaction (BEGIN, a statement per step, COMMIT) took five to seven.
// They keep the generic path's guarantees and fall back to it for the
// uncommon cases (a repeated hold, a settlement without its hold).

// reservePG places a hold in one pipelined transaction: the balance row is
// updated only if enough is available (the row lock and PostgreSQL's
// re-check of the condition make concurrent holds safe), and the hold row
// is inserted only if it was. The commit does not wait for the WAL flush:
// a hold is a reservation, not money (see Reserve).
func (s *Store) reservePG(ctx context.Context, d *pgDB, h storage.Hold) (handled bool, err error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit TO OFF`)
	b.Queue(`WITH b AS (
			UPDATE llm_balances SET held_micros = held_micros + $3, updated_at = $5
			WHERE user_id = $2 AND balance_micros - held_micros >= $3 RETURNING user_id)
		INSERT INTO llm_holds (id, user_id, amount_micros, expires_at, created_at)
		SELECT $1, $2, $3, $4, $5 FROM b RETURNING id`, h.ID, h.User, h.AmountMicros, us(h.ExpiresAt), us(h.CreatedAt))
	b.Queue(`COMMIT`)
	br := d.pool.SendBatch(ctx, b)
	_, err = br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	var placed bool
	if err == nil {
		var id string
		err = br.QueryRow().Scan(&id)
		placed = err == nil
		if errors.Is(err, pgx.ErrNoRows) {
			err = nil
		}
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	var pgErr *pgconn.PgError
	switch {
	case err == nil && placed:
		return true, nil
	case err == nil:
		// Refused, unless this very hold is in place already.
		if _, gerr := s.GetHold(ctx, h.ID); gerr == nil {
			return true, nil
		}
		return true, storage.ErrInsufficientCredits
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return false, nil // this hold id is in place already: the generic path answers
	}
	return true, mapErr(err)
}

// settlePG settles a request whose hold is in place in one statement (an
// implicit transaction): release the hold, debit the balance, append the
// ledger entry with the balance after it, the usage record and the
// metering message. It reports handled=false, having changed nothing, when
// the hold is not there (expired, already settled, never placed), for the
// generic path to deal with.
func (s *Store) settlePG(ctx context.Context, d *pgDB, st storage.Settlement, now int64) (e storage.LedgerEntry, handled bool, err error) {
	u := st.Usage
	topic, okey, payload := "", "", []byte(nil)
	if m := st.Outbox; m != nil {
		topic, okey, payload = m.Topic, m.Key, m.Payload
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = fromUS(now)
	}
	e = storage.LedgerEntry{User: st.User, AmountMicros: -st.CostMicros, Kind: storage.KindUsage, Key: UsageKey(st.HoldID), CreatedAt: fromUS(now)}
	err = d.pool.QueryRow(ctx, `WITH h AS (
			DELETE FROM llm_holds WHERE id = $1 AND user_id = $2
				AND EXISTS (SELECT 1 FROM llm_balances WHERE user_id = $2)
			RETURNING amount_micros),
		b AS (
			UPDATE llm_balances SET balance_micros = balance_micros - $3,
				held_micros = held_micros - (SELECT amount_micros FROM h), updated_at = $4
			WHERE user_id = $2 AND EXISTS (SELECT 1 FROM h)
			RETURNING balance_micros),
		l AS (
			INSERT INTO llm_ledger (user_id, amount_micros, kind, idem_key, note, balance_after, created_at)
			SELECT $2, -$3, 'usage', $5, '', balance_micros, $4 FROM b
			RETURNING id, balance_after),
		u AS (
			INSERT INTO llm_usage (request_id, user_id, org, model, provider, tokens_in, tokens_out, cache_read_in, cache_write_in,
				cost_micros, latency_ms, byok, estimated, created_at)
			SELECT $1, $2, $6, $7, $8, $9, $10, $11, $12, $3, $13, $14, $15, $16 FROM l
			ON CONFLICT (request_id) DO NOTHING),
		o AS (
			INSERT INTO llm_outbox (topic, idem_key, payload, created_at)
			SELECT $17, $18, $19, $4 FROM l WHERE $17 <> ''
			ON CONFLICT (topic, idem_key) DO NOTHING)
		SELECT id, balance_after FROM l`,
		st.HoldID, st.User, st.CostMicros, now, e.Key,
		u.Org, u.Model, u.Provider, u.TokensIn, u.TokensOut, u.CacheReadIn, u.CacheWriteIn,
		u.LatencyMS, b2i(u.BYOK), b2i(u.Estimated), us(u.CreatedAt),
		topic, okey, payload).Scan(&e.ID, &e.BalanceAfter)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return e, true, nil
	case errors.Is(err, pgx.ErrNoRows):
		return e, false, nil // no hold: nothing changed
	case errors.As(err, &pgErr) && pgErr.Code == "23505":
		return e, false, nil // settled before: rolled back, the generic path answers
	}
	return e, true, mapErr(err)
}
