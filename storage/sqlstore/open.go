package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations
var migrationsFS embed.FS

// OpenSQLiteExclusive opens the SQLite database at path for a gateway that
// owns it alone: it takes an exclusive lock on <path>.lock (another process
// asking for it gets an error) and keeps holds in memory, so a request costs
// one write transaction, not two. Tools that only read, import or rewrap
// (caddy llm-import, caddy llm-byok rewrap) use OpenSQLite and may run
// beside it.
func OpenSQLiteExclusive(ctx context.Context, path string) (*Store, error) {
	if err := sqliteDir(path); err != nil {
		return nil, err
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("storage sqlite: %s is in use by another llmgate process (%v); several instances need PostgreSQL", path, err)
	}
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		unlock()
		return nil, err
	}
	s.mem = newMemHolds()
	s.unlock = unlock
	return s, nil
}

// sqliteDir checks the path and creates its directory.
func sqliteDir(path string) error {
	if path == "" {
		return errors.New("storage sqlite: empty path")
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("storage sqlite: %w", err)
		}
	}
	return nil
}

// OpenSQLite opens (creating if needed) the SQLite database at path, in WAL
// mode with a busy timeout, and applies the migrations.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	if err := sqliteDir(path); err != nil {
		return nil, err
	}
	pragmas := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)"
	// The writer never checkpoints: a checkpoint copies the WAL into the
	// database file and syncs it, which would stall every transaction
	// waiting behind it; a separate connection does it in the background.
	w, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=wal_autocheckpoint(0)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("storage sqlite: %w", err)
	}
	cp, err := sql.Open("sqlite", "file:"+path+"?"+pragmas)
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("storage sqlite: %w", err)
	}
	cp.SetMaxOpenConns(1)
	w.SetMaxOpenConns(1)
	r, err := sql.Open("sqlite", "file:"+path+"?"+pragmas+"&_pragma=query_only(ON)")
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("storage sqlite: %w", err)
	}
	r.SetMaxOpenConns(4)
	d := &sqliteDB{sqlQ: sqlQ{x: r, cache: &stmtCache{db: r}}, w: w, r: r, wc: &stmtCache{db: w}, cp: cp}
	d.startWriter()
	s := &Store{db: d, dialect: "sqlite", now: time.Now}
	if err := s.migrate(ctx); err != nil {
		_ = d.close()
		return nil, err
	}
	s.migrated.Store(true)
	return s, nil
}

// PostgresOptions tune the PostgreSQL pool.
type PostgresOptions struct {
	// StatementTimeout bounds every statement (default 5s).
	StatementTimeout time.Duration
	// MaxConns of the pool (default: pgx's, max(4, CPUs)).
	MaxConns int32
	// Schema, when set, is created if missing and put first on the search
	// path, so separate deployments (or test runs) can share a database.
	Schema string
}

// ParsePostgresDSN checks a DSN without connecting. Its errors never repeat
// the password.
func ParsePostgresDSN(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("storage postgres: the DSN does not parse: %s", redact(err.Error(), dsn))
	}
	return cfg, nil
}

// redact removes the DSN's password from msg.
func redact(msg, dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	for _, f := range strings.Fields(dsn) {
		if k, v, ok := strings.Cut(f, "="); ok && k == "password" && v != "" {
			msg = strings.ReplaceAll(msg, v, "xxxxx")
		}
	}
	return msg
}

// OpenPostgres makes a pool for dsn. It does not wait for the database: the
// pool connects on first use, and Migrate (called by Ping until it succeeds)
// applies the schema, so a gateway can start while PostgreSQL is down.
func OpenPostgres(dsn string, o PostgresOptions) (*Store, error) {
	cfg, err := ParsePostgresDSN(dsn)
	if err != nil {
		return nil, err
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = 5 * time.Second
	}
	rp := cfg.ConnConfig.RuntimeParams
	if rp["application_name"] == "" {
		rp["application_name"] = "llmgate"
	}
	rp["statement_timeout"] = strconv.FormatInt(o.StatementTimeout.Milliseconds(), 10)
	if o.Schema != "" {
		if strings.ContainsAny(o.Schema, `"; `) {
			return nil, errors.New("storage postgres: schema name must be a plain identifier")
		}
		rp["search_path"] = o.Schema
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("storage postgres: %s", redact(err.Error(), dsn))
	}
	s := &Store{db: &pgDB{pgQ: pgQ{pool}, pool: pool}, dialect: "postgres", now: time.Now, schema: o.Schema}
	return s, nil
}

// toSQLite turns the PostgreSQL migrations into SQLite's dialect; they are
// written once, in the portable subset plus these two types.
var toSQLite = strings.NewReplacer("BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT", "BYTEA", "BLOB")

type migration struct {
	version int
	name    string
	sql     string
}

func (s *Store) migrations() ([]migration, error) {
	const dir = "migrations"
	entries, err := fs.ReadDir(migrationsFS, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", e.Name())
		}
		b, err := migrationsFS.ReadFile(dir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		text := string(b)
		if s.dialect == "sqlite" {
			text = toSQLite.Replace(text)
		}
		ms = append(ms, migration{v, e.Name(), text})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// migrationLock is the advisory lock key under which PostgreSQL migrations run.
const migrationLock = 0x6c6c6d67617465 // "llmgate"

// Migrate applies the migrations not yet applied, each in its own
// transaction. On PostgreSQL it holds an advisory lock, so instances starting
// together apply each migration once.
func (s *Store) Migrate(ctx context.Context) error { return s.migrate(ctx) }

func (s *Store) migrate(ctx context.Context) error {
	ms, err := s.migrations()
	if err != nil {
		return err
	}
	apply := func(x q, tx func(func(q) error) error) error {
		if _, err := x.exec(ctx, `CREATE TABLE IF NOT EXISTS llm_schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
			return err
		}
		for _, m := range ms {
			err := tx(func(t q) error {
				var one int
				err := t.queryRow(ctx, `SELECT 1 FROM llm_schema_migrations WHERE version = $1`, m.version).Scan(&one)
				if err == nil {
					return nil
				}
				if !errors.Is(err, errNotFound) {
					return err
				}
				if _, err := t.exec(ctx, m.sql); err != nil {
					return fmt.Errorf("migration %s: %w", m.name, err)
				}
				_, err = t.exec(ctx, `INSERT INTO llm_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, m.version, m.name, us(time.Now()))
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	switch d := s.db.(type) {
	case *sqliteDB:
		// Migrations are many statements at once: not through the statement cache.
		return apply(sqlQ{x: d.w}, func(fn func(q) error) error {
			tx, err := d.w.BeginTx(ctx, nil)
			if err != nil {
				return mapErr(err)
			}
			if err := fn(sqlQ{x: tx}); err != nil {
				_ = tx.Rollback()
				return err
			}
			return mapErr(tx.Commit())
		})
	case *pgDB:
		conn, err := d.pool.Acquire(ctx)
		if err != nil {
			return mapErr(err)
		}
		defer conn.Release()
		if s.schema != "" {
			if _, err := conn.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{s.schema}.Sanitize()); err != nil {
				return mapErr(err)
			}
		}
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
			return mapErr(err)
		}
		defer func() { _, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, migrationLock) }()
		return apply(pgQ{conn}, func(fn func(q) error) error {
			return mapErr(pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return fn(pgQ{tx}) }))
		})
	}
	return errors.New("storage: unknown backend")
}
