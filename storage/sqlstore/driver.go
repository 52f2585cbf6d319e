// Package sqlstore implements storage.Store on SQLite (modernc.org/sqlite,
// pure Go, the embedded default) and on PostgreSQL (pgx v5). The SQL is
// written once, with $n parameters, and runs on both; only migrations and the
// connection layer differ.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/llmgate/llmgate/storage"
)

// q is what the queries run on: a pool or a transaction.
type q interface {
	exec(ctx context.Context, sql string, args ...any) (int64, error)
	queryRow(ctx context.Context, sql string, args ...any) row
	query(ctx context.Context, sql string, args ...any) (rows, error)
}

type row interface{ Scan(dest ...any) error }

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// db is a q that can run a function in one transaction.
type db interface {
	q
	inTx(ctx context.Context, fn func(q) error) error
	ping(ctx context.Context) error
	close() error
}

// ---- PostgreSQL ----

type pgQ struct {
	x interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	}
}

func (p pgQ) exec(ctx context.Context, s string, args ...any) (int64, error) {
	tag, err := p.x.Exec(ctx, s, args...)
	return tag.RowsAffected(), mapErr(err)
}
func (p pgQ) queryRow(ctx context.Context, s string, args ...any) row {
	return errRow{p.x.QueryRow(ctx, s, args...)}
}
func (p pgQ) query(ctx context.Context, s string, args ...any) (rows, error) {
	r, err := p.x.Query(ctx, s, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	return pgRows{r}, nil
}

type pgRows struct{ pgx.Rows }

func (r pgRows) Err() error { return mapErr(r.Rows.Err()) }

type pgDB struct {
	pgQ
	pool *pgxpool.Pool
}

func (d *pgDB) inTx(ctx context.Context, fn func(q) error) error {
	return mapErr(pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error { return fn(pgQ{tx}) }))
}
func (d *pgDB) ping(ctx context.Context) error { return mapErr(d.pool.Ping(ctx)) }
func (d *pgDB) close() error                   { d.pool.Close(); return nil }

// ---- SQLite ----

// SQLite takes the same $n parameters as ?n (numbered, so order and reuse
// work as in PostgreSQL).
var dollarParam = regexp.MustCompile(`\$(\d+)`)

var rebound sync.Map // query text → SQLite text

func rebind(s string) string {
	if v, ok := rebound.Load(s); ok {
		return v.(string)
	}
	r := dollarParam.ReplaceAllString(s, "?$1")
	rebound.Store(s, r)
	return r
}

type sqlQ struct {
	x interface {
		ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
		QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	}
	// With a cache, statements are prepared once per connection and reused
	// (SQLite spends as long parsing a statement as running it).
	cache *stmtCache
	tx    *sql.Tx
	// missed collects queries met inside a transaction before they were
	// cached: the single writer connection is busy then, so they are
	// prepared after the transaction ends.
	missed *[]string
}

// stmtCache keeps one prepared statement per query text for a *sql.DB.
type stmtCache struct {
	db *sql.DB
	m  sync.Map // query → *sql.Stmt
	mu sync.Mutex
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if v, ok := c.m.Load(query); ok {
		return v.(*sql.Stmt), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.m.Load(query); ok {
		return v.(*sql.Stmt), nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.m.Store(query, st)
	return st, nil
}

func (c *stmtCache) close() {
	c.m.Range(func(_, v any) bool { _ = v.(*sql.Stmt).Close(); return true })
}

// prepared is the cached statement for query, bound to the transaction when
// there is one; nil when there is no cache.
func (s sqlQ) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if s.cache == nil {
		return nil, nil
	}
	if s.tx != nil {
		v, ok := s.cache.m.Load(query)
		if !ok {
			*s.missed = append(*s.missed, query)
			return nil, nil
		}
		return s.tx.StmtContext(ctx, v.(*sql.Stmt)), nil
	}
	return s.cache.get(ctx, query)
}

func (s sqlQ) exec(ctx context.Context, query string, args ...any) (int64, error) {
	q := rebind(query)
	var res sql.Result
	st, err := s.prepared(ctx, q)
	switch {
	case err != nil:
	case st != nil:
		res, err = st.ExecContext(ctx, args...)
	default:
		res, err = s.x.ExecContext(ctx, q, args...)
	}
	if err != nil {
		return 0, mapErr(err)
	}
	n, err := res.RowsAffected()
	return n, mapErr(err)
}
func (s sqlQ) queryRow(ctx context.Context, query string, args ...any) row {
	q := rebind(query)
	st, err := s.prepared(ctx, q)
	if err != nil {
		return errRow{errScan{err}}
	}
	if st != nil {
		return errRow{st.QueryRowContext(ctx, args...)}
	}
	return errRow{s.x.QueryRowContext(ctx, q, args...)}
}
func (s sqlQ) query(ctx context.Context, query string, args ...any) (rows, error) {
	q := rebind(query)
	st, err := s.prepared(ctx, q)
	if err != nil {
		return nil, mapErr(err)
	}
	var r *sql.Rows
	if st != nil {
		r, err = st.QueryContext(ctx, args...)
	} else {
		r, err = s.x.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, mapErr(err)
	}
	return sqlRows{r}, nil
}

type errScan struct{ err error }

func (e errScan) Scan(...any) error { return e.err }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close()     { _ = r.Rows.Close() }
func (r sqlRows) Err() error { return mapErr(r.Rows.Err()) }

// sqliteDB writes through one connection (SQLite has one writer; one
// connection with BEGIN IMMEDIATE never meets SQLITE_BUSY between our own
// transactions) and reads through a small pool.
type sqliteDB struct {
	sqlQ // the reader
	w    *sql.DB
	r    *sql.DB
	wc   *stmtCache
}

func (d *sqliteDB) inTx(ctx context.Context, fn func(q) error) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return mapErr(err)
	}
	var missed []string
	err = fn(sqlQ{x: tx, cache: d.wc, tx: tx, missed: &missed})
	if err != nil {
		_ = tx.Rollback()
	} else {
		err = mapErr(tx.Commit())
	}
	for _, q := range missed {
		_, _ = d.wc.get(ctx, q) // the connection is free again
	}
	return err
}

// exec on the SQLite db goes to the writer.
func (d *sqliteDB) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return sqlQ{x: d.w, cache: d.wc}.exec(ctx, query, args...)
}

func (d *sqliteDB) ping(ctx context.Context) error { return mapErr(d.w.PingContext(ctx)) }
func (d *sqliteDB) close() error {
	d.wc.close()
	d.sqlQ.cache.close()
	return errors.Join(d.r.Close(), d.w.Close())
}

// ---- errors ----

type errRow struct{ r row }

func (e errRow) Scan(dest ...any) error { return mapErr(e.r.Scan(dest...)) }

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows), errors.Is(err, sql.ErrNoRows):
		return storage.ErrNotFound
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrInsufficientCredits),
		errors.Is(err, storage.ErrConflict), errors.Is(err, storage.ErrUnavailable),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Errorf("storage: postgres %s: %s", pgErr.Code, pgErr.Message)
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %s", storage.ErrUnavailable, connErrText(err))
	}
	return err
}

// connErrText describes a connection failure without the DSN it may quote.
func connErrText(err error) string {
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return "cannot connect to PostgreSQL"
	}
	return "connection to PostgreSQL lost"
}
