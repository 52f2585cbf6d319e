package gateway

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/cache"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/storage/sqlstore"
)

// StorageConfig chooses the store. The default is SQLite under Caddy's data
// directory.
type StorageConfig struct {
	// Backend is "sqlite" (default) or "postgres".
	Backend string `json:"backend,omitempty"`
	// Path of the SQLite file (default: <caddy data dir>/llmgate/llmgate.db).
	Path string `json:"path,omitempty"`
	// DSN of PostgreSQL, normally {env.LLM_DATABASE_URL}, resolved at load.
	DSN string `json:"dsn,omitempty"`
	// Schema puts llmgate's tables in their own PostgreSQL schema.
	Schema string `json:"schema,omitempty"`
	// StatementTimeout bounds each PostgreSQL statement (default 5s).
	StatementTimeout caddy.Duration `json:"statement_timeout,omitempty"`
	// MaxConns of the PostgreSQL pool.
	MaxConns int32 `json:"max_conns,omitempty"`
}

// RedisConfig turns on the shared cache.
type RedisConfig struct {
	// URL is redis://[user:pass@]host:port[/db], normally {env.LLM_REDIS_URL}.
	URL string `json:"url,omitempty"`
	// Prefix of every key (default "llmgate:").
	Prefix string `json:"prefix,omitempty"`
}

// pools keep stores and Redis clients across config reloads, keyed by what
// identifies them (a DSN, a path, a URL), and close them when the last config
// using them unloads.
var pools = caddy.NewUsagePool()

// pooledStore is a store with its readiness, both shared by every config
// that uses the same DSN, so a reload starts out knowing the store answers.
type pooledStore struct {
	*sqlstore.Store
	state *storeState
}

func (p pooledStore) Destruct() error { return p.Store.Close() }

type pooledCache struct{ cache.Cache }

func (p pooledCache) Destruct() error { p.Cache.Close(); return nil }

// storeState tracks whether the store answers; the supervisor keeps it current.
type storeState struct {
	ready   atomic.Bool
	lastErr atomic.Value // string
}

func (a *App) provisionStorage(ctx caddy.Context, repl *caddy.Replacer) error {
	sc := a.Storage
	if sc == nil {
		sc = &StorageConfig{}
	}
	var key string
	var open func() (*sqlstore.Store, error)
	switch sc.Backend {
	case "", "sqlite":
		path := repl.ReplaceKnown(sc.Path, "")
		if path == "" {
			path = filepath.Join(caddy.AppDataDir(), "llmgate", "llmgate.db")
		}
		key = "sqlite:" + path
		open = func() (*sqlstore.Store, error) { return sqlstore.OpenSQLiteExclusive(ctx, path) }
	case "postgres":
		dsn := strings.TrimSpace(repl.ReplaceKnown(sc.DSN, ""))
		if dsn == "" {
			return errors.New("storage postgres: the DSN is empty (is LLM_DATABASE_URL set?)")
		}
		if _, err := sqlstore.ParsePostgresDSN(dsn); err != nil {
			return err
		}
		key = "postgres:" + sc.Schema + ":" + dsn
		open = func() (*sqlstore.Store, error) {
			return sqlstore.OpenPostgres(dsn, sqlstore.PostgresOptions{
				StatementTimeout: time.Duration(sc.StatementTimeout), MaxConns: sc.MaxConns, Schema: sc.Schema})
		}
	default:
		return fmt.Errorf("storage backend %q is not supported (sqlite or postgres)", sc.Backend)
	}
	v, _, err := pools.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := open()
		if err != nil {
			return nil, err
		}
		ps := pooledStore{Store: s, state: &storeState{}}
		if s.Dialect() == "sqlite" {
			ps.state.ready.Store(true) // opened and migrated above
		}
		return ps, nil
	})
	if err != nil {
		return err
	}
	a.poolKeys = append(a.poolKeys, key)
	a.store = v.(pooledStore).Store
	a.storeState = v.(pooledStore).state
	a.storeBackend = a.store.Dialect()

	if rc := a.Redis; rc != nil && rc.URL != "" {
		url := strings.TrimSpace(repl.ReplaceKnown(rc.URL, ""))
		if url == "" {
			a.logger.Warn("redis URL is empty; using the in-process cache")
		} else {
			if _, err := cache.ParseRedisURL(url); err != nil {
				return err
			}
			rkey := "redis:" + rc.Prefix + ":" + url
			logger := a.logger
			m := a.metrics
			v, _, err := pools.LoadOrNew(rkey, func() (caddy.Destructor, error) {
				c, err := cache.NewRedis(cache.RedisOptions{URL: url, Prefix: rc.Prefix, Logger: logger,
					OnError: func() { m.cacheErrors.Inc() }})
				if err != nil {
					return nil, err
				}
				return pooledCache{c}, nil
			})
			if err != nil {
				return err
			}
			a.poolKeys = append(a.poolKeys, rkey)
			a.cache = v.(pooledCache).Cache
		}
	}
	if a.cache == nil {
		v, _, _ := pools.LoadOrNew("local", func() (caddy.Destructor, error) { return pooledCache{cache.NewLocal()}, nil })
		a.poolKeys = append(a.poolKeys, "local")
		a.cache = v.(pooledCache).Cache
	}
	a.keys = &auth.Keys{Store: a.store, Cache: a.cache}
	return nil
}

// checkStore pings the store once and records the outcome.
func (a *App) checkStore(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := a.store.Ping(pctx)
	if ctx.Err() != nil {
		return
	}
	st := a.storeState
	was := st.ready.Swap(err == nil)
	switch {
	case err != nil && was:
		a.logger.Error("store unavailable; LLM routes answer 503 until it returns", zap.String("backend", a.storeBackend), zap.String("error", err.Error()))
	case err != nil && st.lastErr.Load() == nil:
		a.logger.Warn("store not reachable yet; LLM routes answer 503 until it is", zap.String("backend", a.storeBackend), zap.String("error", err.Error()))
	case err == nil && !was:
		a.logger.Info("store ready", zap.String("backend", a.storeBackend))
	}
	if err != nil {
		st.lastErr.Store(err.Error())
	}
}

// storeCheckInterval is how often the store is pinged: every second while
// it is down, so routes recover at once, every 5 s while it answers.
func (a *App) storeCheckInterval() time.Duration {
	if a.storeState.ready.Load() {
		return 5 * time.Second
	}
	return time.Second
}

// Keys looks up and manages gateway API keys through the cache.
func (a *App) Keys() *auth.Keys { return a.keys }

// Store is the app's store.
func (a *App) Store() storage.Store { return a.store }

// Cache is the app's cache (Redis when configured and reachable).
func (a *App) Cache() cache.Cache { return a.cache }

// StoreReady refuses with 503 and Retry-After while the store is down.
func (a *App) StoreReady() *llmerr.Error {
	if a.storeState != nil && a.storeState.ready.Load() {
		return nil
	}
	return StoreUnavailable()
}

// storeSchema names the store for the spool file: the SQLite path or the
// PostgreSQL schema and host, never the DSN's secrets.
func (a *App) storeSchema() string {
	sc := a.Storage
	if sc == nil {
		return "default"
	}
	if sc.Backend == "postgres" {
		return sc.Schema + "-" + SafeURL(caddy.NewReplacer().ReplaceKnown(sc.DSN, ""))
	}
	return sc.Path
}
