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
	"time"

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
	// ctx, when set, replaces the context of every statement (group
	// commit: see sqliteDB).
	ctx context.Context
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
	if s.ctx != nil {
		ctx = s.ctx
	}
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
	if s.ctx != nil {
		ctx = s.ctx
	}
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
	if s.ctx != nil {
		ctx = s.ctx
	}
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
//
// Writes are group-committed: one goroutine owns the writer and runs every
// transaction waiting for it inside one SQLite transaction, each under its
// own SAVEPOINT (so each stays atomic and one failing rolls back only its
// own work), then commits once and answers them all. Under concurrency this
// writes each touched page once per batch instead of once per request, which
// is what bounds SQLite's write rate (one WAL frame write per page). A
// caller is answered only after the commit, as before.
type sqliteDB struct {
	sqlQ // the reader
	w    *sql.DB
	r    *sql.DB
	wc   *stmtCache

	txs     chan *txReq
	stop    chan struct{}
	stopped chan struct{}
	closeMu sync.RWMutex
	closed  bool

	cp        *sql.DB // checkpoints, in the background
	cpStopped chan struct{}
}

// checkpointEvery is how often the background connection checkpoints.
const checkpointEvery = 250 * time.Millisecond

func (d *sqliteDB) checkpointer() {
	defer close(d.cpStopped)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			// Fold the WAL into the database on the way out.
			_, _ = d.cp.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
			return
		case <-t.C:
			// PASSIVE: never waits for, and never blocks, the writer or readers.
			_, _ = d.cp.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
		}
	}
}

// txReq is one transaction waiting for the writer.
type txReq struct {
	ctx  context.Context
	fn   func(q) error
	done chan error
}

// maxBatch bounds the transactions committed together.
const maxBatch = 128

// gatherWait is how long the writer waits for more transactions when the
// last batch showed load (at least busyBatch of them); with one request at
// a time it never waits.
const gatherWait = 300 * time.Microsecond

const busyBatch = 4

var txReqPool = sync.Pool{New: func() any { return &txReq{done: make(chan error, 1)} }}

func (d *sqliteDB) startWriter() {
	d.txs = make(chan *txReq, maxBatch)
	d.stop = make(chan struct{})
	d.stopped = make(chan struct{})
	go d.writer()
	if d.cp != nil {
		d.cpStopped = make(chan struct{})
		go d.checkpointer()
	}
}

func (d *sqliteDB) inTx(ctx context.Context, fn func(q) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := txReqPool.Get().(*txReq)
	r.ctx, r.fn = ctx, fn
	// The read lock makes close wait for every send in progress, so all
	// that is queued is answered (by the writer's drain on close).
	d.closeMu.RLock()
	if d.closed {
		d.closeMu.RUnlock()
		return fmt.Errorf("%w: the store is closed", storage.ErrUnavailable)
	}
	select {
	case d.txs <- r:
		d.closeMu.RUnlock()
	case <-ctx.Done():
		d.closeMu.RUnlock()
		return ctx.Err()
	}
	// Once queued, the answer always comes (the writer does not wait on
	// this context): the transaction may already be committed.
	err := <-r.done
	r.ctx, r.fn = nil, nil
	txReqPool.Put(r)
	return err
}

func (d *sqliteDB) writer() {
	defer close(d.stopped)
	batch := make([]*txReq, 0, maxBatch)
	errs := make([]error, 0, maxBatch)
	busy := false
	for {
		select {
		case r := <-d.txs:
			batch = append(batch[:0], r)
		case <-d.stop:
			for {
				select {
				case r := <-d.txs:
					r.done <- fmt.Errorf("%w: the store is closed", storage.ErrUnavailable)
				default:
					return
				}
			}
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-d.txs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		if busy && len(batch) < maxBatch/2 {
			// Under load, a moment's wait fills the batch: the pages a
			// commit writes are shared by more requests.
			gatherUntil := time.NewTimer(gatherWait)
		gather:
			for len(batch) < maxBatch/2 {
				select {
				case r := <-d.txs:
					batch = append(batch, r)
				case <-gatherUntil.C:
					break gather
				}
			}
			gatherUntil.Stop()
		}
		busy = len(batch) >= busyBatch
		errs = d.runBatch(batch, errs[:0])
		for i, r := range batch {
			r.done <- errs[i]
			batch[i] = nil
		}
	}
}

// runBatch runs the transactions of batch in one SQLite transaction and
// returns each one's outcome.
func (d *sqliteDB) runBatch(batch []*txReq, errs []error) []error {
	// The statements run without the callers' contexts: a canceled
	// statement interrupts SQLite, which can roll back the whole
	// transaction, so a caller gone away is only skipped before it starts.
	ctx := context.Background()
	fail := func(err error) []error {
		errs = errs[:0]
		for range batch {
			errs = append(errs, err)
		}
		return errs
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fail(mapErr(err))
	}
	var missed []string
	tq := sqlQ{x: tx, cache: d.wc, tx: tx, missed: &missed, ctx: ctx}
	single := len(batch) == 1
	ok := 0
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs = append(errs, err)
			continue
		}
		if single {
			err := r.fn(tq)
			errs = append(errs, err)
			if err != nil {
				_ = tx.Rollback()
				return errs
			}
			ok++
			continue
		}
		if _, err := tq.exec(ctx, "SAVEPOINT llm_tx"); err != nil {
			_ = tx.Rollback()
			return fail(err)
		}
		err := r.fn(tq)
		if err != nil {
			if _, rerr := tq.exec(ctx, "ROLLBACK TO llm_tx"); rerr != nil {
				// SQLite rolled the whole transaction back (I/O error,
				// disk full): nothing of this batch is kept.
				_ = tx.Rollback()
				return fail(errors.Join(err, rerr))
			}
		} else {
			ok++
		}
		if _, rerr := tq.exec(ctx, "RELEASE llm_tx"); rerr != nil {
			_ = tx.Rollback()
			return fail(rerr)
		}
		errs = append(errs, err)
	}
	if ok == 0 {
		_ = tx.Rollback()
	} else if err := tx.Commit(); err != nil {
		err = mapErr(err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	for _, q := range missed {
		_, _ = d.wc.get(ctx, q) // the connection is free again
	}
	return errs
}

// exec on the SQLite db goes to the writer.
func (d *sqliteDB) exec(ctx context.Context, query string, args ...any) (int64, error) {
	return sqlQ{x: d.w, cache: d.wc}.exec(ctx, query, args...)
}

func (d *sqliteDB) ping(ctx context.Context) error { return mapErr(d.w.PingContext(ctx)) }
func (d *sqliteDB) close() error {
	if d.stop != nil {
		d.closeMu.Lock()
		if d.closed { // closing twice is harmless
			d.closeMu.Unlock()
			return nil
		}
		d.closed = true
		d.closeMu.Unlock()
		close(d.stop)
		<-d.stopped
		if d.cpStopped != nil {
			<-d.cpStopped
		}
	}
	d.wc.close()
	d.sqlQ.cache.close()
	var cerr error
	if d.cp != nil {
		cerr = d.cp.Close()
	}
	return errors.Join(d.r.Close(), d.w.Close(), cerr)
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
