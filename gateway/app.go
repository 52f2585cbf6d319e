// Package gateway is the `llm` Caddy app: the catalog of providers,
// deployments and models, the health registry and its probes, the upstream
// transports and the proxy loop with failover. Handlers reach it with
// ctx.App("llm").
package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/cache"
	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/credits"
	"github.com/llmgate/llmgate/health"
	"github.com/llmgate/llmgate/storage/sqlstore"
	"github.com/llmgate/llmgate/vault"
)

func init() {
	caddy.RegisterModule(&App{})
}

// DefaultMaxBodyBytes is the request body limit when none is configured.
const DefaultMaxBodyBytes = 10 << 20

// App is the `llm` app. Its JSON form is the "llm" key under "apps".
type App struct {
	// Providers that can serve models. A provider whose api_key is set but
	// resolves empty, or that has no URL, is skipped with one log line.
	Providers []*ProviderConfig `json:"providers,omitempty"`
	// Models add to or override the built-in catalog, by id.
	Models []catalog.Model `json:"models,omitempty"`
	// NoBuiltinCatalog leaves out the embedded catalog of common models.
	NoBuiltinCatalog bool `json:"no_builtin_catalog,omitempty"`
	// MaxBodyBytes limits request bodies (default 10 MiB); larger → 413.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// Storage chooses the store; SQLite under Caddy's data dir by default.
	Storage *StorageConfig `json:"storage,omitempty"`
	// Redis, when set, shares the cache and counters between instances.
	Redis *RedisConfig `json:"redis,omitempty"`
	// CreditsPerUSD scales list prices into credits (default 1: one
	// credit is one USD of provider list price).
	CreditsPerUSD int64 `json:"credits_per_usd,omitempty"`
	// Tiers replace the default tier of the same name, or add one.
	Tiers []credits.Tier `json:"tiers,omitempty"`
	// NoDefaultTiers leaves out trial, starter, professional, enterprise.
	NoDefaultTiers bool `json:"no_default_tiers,omitempty"`
	// DefaultTier is used for callers whose tier is unknown (default trial).
	DefaultTier string `json:"default_tier,omitempty"`
	// HoldTTL is how long a hold lives if its instance dies (default 15m).
	HoldTTL caddy.Duration `json:"hold_ttl,omitempty"`
	// Lago, when set, meters every settled request to Lago.
	Lago *LagoConfig `json:"lago,omitempty"`
	// BYOK configures the vault of users' own provider keys.
	BYOK *BYOKConfig `json:"byok,omitempty"`
	// Auto configures smart routing (model "auto" and route groups).
	Auto *AutoConfig `json:"auto,omitempty"`

	ctx       caddy.Context
	logger    *zap.Logger
	catalog   *catalog.Catalog
	providers map[string]*Provider
	order     []*Provider // active providers in config order
	skipped   []SkippedProvider
	healthKey []string
	metrics   *metrics
	cancel    context.CancelFunc
	probes    sync.WaitGroup

	store        *sqlstore.Store
	storeBackend string
	storeState   *storeState
	cache        cache.Cache
	keys         *auth.Keys
	poolKeys     []string
	tiers        map[string]*credits.Tier
	lago         *LagoConfig
	ring         *vault.Ring
	spool        *spool
	categories   map[string]*CategoryConfig
	groups       map[string]*GroupConfig
	margin       int
	now          func() time.Time
}

func (a *App) provisionTiers() error {
	if a.CreditsPerUSD == 0 {
		a.CreditsPerUSD = 1
	}
	if a.CreditsPerUSD < 0 {
		return fmt.Errorf("credits_per_usd must be positive")
	}
	a.tiers = map[string]*credits.Tier{}
	if !a.NoDefaultTiers {
		for _, t := range credits.DefaultTiers() {
			a.tiers[t.Name] = &t
		}
	}
	for i := range a.Tiers {
		t := a.Tiers[i]
		if err := t.Validate(); err != nil {
			return err
		}
		a.tiers[t.Name] = &t
	}
	if a.DefaultTier == "" {
		a.DefaultTier = "trial"
	}
	if _, ok := a.tiers[a.DefaultTier]; !ok {
		return fmt.Errorf("default_tier %q is not a configured tier", a.DefaultTier)
	}
	return nil
}

// SkippedProvider is a configured provider that is not in service, and why.
type SkippedProvider struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// DeploymentConfig is one upstream URL of a provider.
type DeploymentConfig struct {
	URL    string `json:"url"`
	Weight int    `json:"weight,omitempty"`
}

// BreakerConfig tunes the circuit breaker of each deployment.
type BreakerConfig struct {
	Failures         int            `json:"failures,omitempty"`
	ErrorRatePercent int            `json:"error_rate_percent,omitempty"`
	MinRequests      int            `json:"min_requests,omitempty"`
	Window           caddy.Duration `json:"window,omitempty"`
	Cooldown         caddy.Duration `json:"cooldown,omitempty"`
	MaxCooldown      caddy.Duration `json:"max_cooldown,omitempty"`
}

// ProbeConfig enables active health checks of a provider.
type ProbeConfig struct {
	// Interval between rounds (default 30s), jittered by ±10%.
	Interval caddy.Duration `json:"interval,omitempty"`
	// Timeout of one probe (default 5s).
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Path relative to the base URL (default /models).
	Path string `json:"path,omitempty"`
}

// ProviderConfig configures one provider.
type ProviderConfig struct {
	ID string `json:"id"`
	// API style: "openai" (the default) or "anthropic" (the Messages API:
	// x-api-key, anthropic-version; OpenAI requests are translated; base
	// URL default https://api.anthropic.com/v1).
	API string `json:"api,omitempty"`
	// BaseURL is shorthand for one deployment of weight 1.
	BaseURL     string             `json:"base_url,omitempty"`
	Deployments []DeploymentConfig `json:"deployments,omitempty"`
	// APIKey is the platform key, normally a placeholder such as
	// {env.OPENAI_API_KEY}, resolved at provision time. Unset means the
	// provider needs no key (a local vLLM or Ollama).
	APIKey *string `json:"api_key,omitempty"`
	// Priority is the default order of this provider among a model's
	// providers: lower first (default 10).
	Priority int `json:"priority,omitempty"`
	// ServesAllModels makes the provider serve every catalog model under the
	// model's id (a LiteLLM proxy).
	ServesAllModels bool `json:"serves_all_models,omitempty"`
	// BYOKOnly serves only callers who brought their own key for this
	// provider; it needs no platform key.
	BYOKOnly bool `json:"byok_only,omitempty"`
	// DialTimeout (default 3s), FirstByteTimeout: until response headers
	// (default 120s), StreamIdleTimeout: between body reads (default 60s).
	DialTimeout       caddy.Duration `json:"dial_timeout,omitempty"`
	FirstByteTimeout  caddy.Duration `json:"first_byte_timeout,omitempty"`
	StreamIdleTimeout caddy.Duration `json:"stream_idle_timeout,omitempty"`
	// MaxIdleConnsPerHost for the upstream transport (default 256).
	MaxIdleConnsPerHost int            `json:"max_idle_conns_per_host,omitempty"`
	Breaker             *BreakerConfig `json:"breaker,omitempty"`
	Probe               *ProbeConfig   `json:"probe,omitempty"`
}

// Provider is a provider in service.
type Provider struct {
	Config      *ProviderConfig
	key         string
	transport   *reverseproxy.HTTPTransport
	deployments []*Deployment
	firstByte   time.Duration
	idle        time.Duration
}

// Deployment is one upstream URL of a provider with its live health.
type Deployment struct {
	Health *health.Deployment
	base   string // base URL without trailing slash
}

// HasKey reports whether a platform key is configured.
func (p *Provider) HasKey() bool { return p.key != "" }

// Deployments lists the provider's deployments.
func (p *Provider) Deployments() []*Deployment { return p.deployments }

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "llm", New: func() caddy.Module { return new(App) }}
}

// healthPool keeps deployment health across config reloads, keyed by
// provider id and deployment URL.
var healthPool = caddy.NewUsagePool()

type pooledHealth struct{ *health.Deployment }

func (pooledHealth) Destruct() error { return nil }

// Provision sets up the catalog, providers, transports and health state.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	if a.now == nil {
		a.now = time.Now
	}
	if err := a.provisionTiers(); err != nil {
		return err
	}
	if a.MaxBodyBytes == 0 {
		a.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if a.MaxBodyBytes < 0 {
		return fmt.Errorf("max_body_bytes must be positive")
	}
	var err error
	m, err := newMetrics(ctx.GetMetricsRegistry(), a)
	if err != nil {
		return err
	}
	a.metrics = m
	repl := caddy.NewReplacer()
	if err := a.provisionStorage(ctx, repl); err != nil {
		return err
	}
	if err := a.provisionLago(repl); err != nil {
		return err
	}
	if a.spool, err = newSpool(filepath.Join(caddy.AppDataDir(), "llmgate"), a.storeBackend+"-"+a.storeSchema()); err != nil {
		return fmt.Errorf("settlement spool: %w", err)
	}
	if err := a.provisionBYOK(ctx, repl); err != nil {
		return err
	}
	a.providers = make(map[string]*Provider, len(a.Providers))
	seen := map[string]bool{}
	for _, pc := range a.Providers {
		if pc.ID == "" || strings.ContainsAny(pc.ID, "/ ") {
			return fmt.Errorf("provider id %q must be non-empty, without spaces or slashes", pc.ID)
		}
		if seen[pc.ID] {
			return fmt.Errorf("provider %s is configured twice", pc.ID)
		}
		seen[pc.ID] = true
		p, reason, err := a.provisionProvider(ctx, repl, pc)
		if err != nil {
			return fmt.Errorf("provider %s: %w", pc.ID, err)
		}
		if p == nil {
			a.skipped = append(a.skipped, SkippedProvider{ID: pc.ID, Reason: reason})
			a.logger.Info("provider skipped", zap.String("provider", pc.ID), zap.String("reason", reason))
			continue
		}
		a.providers[pc.ID] = p
		a.order = append(a.order, p)
	}
	models := a.Models
	if !a.NoBuiltinCatalog {
		models = catalog.Merge(catalog.Builtin(), a.Models)
	}
	prio := make(map[string]int, len(a.providers))
	var catchAll []string
	for _, p := range a.order {
		prio[p.Config.ID] = p.Config.Priority
		if p.Config.ServesAllModels {
			catchAll = append(catchAll, p.Config.ID)
		}
	}
	if a.catalog, err = catalog.New(models, prio, catchAll); err != nil {
		return err
	}
	return a.provisionAuto()
}

func (a *App) provisionProvider(ctx caddy.Context, repl *caddy.Replacer, pc *ProviderConfig) (*Provider, string, error) {
	if pc.API == "" {
		pc.API = "openai"
	}
	if pc.API != "openai" && pc.API != "anthropic" {
		return nil, "", fmt.Errorf("api %q is not supported (supported: openai, anthropic)", pc.API)
	}
	if pc.API == "anthropic" && pc.BaseURL == "" && len(pc.Deployments) == 0 {
		pc.BaseURL = "https://api.anthropic.com/v1"
	}
	if pc.Priority == 0 {
		pc.Priority = 10
	}
	p := &Provider{Config: pc}
	if pc.APIKey != nil {
		p.key = strings.TrimSpace(repl.ReplaceKnown(*pc.APIKey, ""))
		if p.key == "" && !pc.BYOKOnly {
			return nil, "api_key is empty", nil
		}
	}
	deps := slices.Clone(pc.Deployments)
	if pc.BaseURL != "" {
		deps = append([]DeploymentConfig{{URL: pc.BaseURL, Weight: 1}}, deps...)
	}
	b := health.Breaker{}
	if bc := pc.Breaker; bc != nil {
		b = health.Breaker{Failures: bc.Failures, ErrorRatePercent: bc.ErrorRatePercent, MinRequests: bc.MinRequests,
			Window: time.Duration(bc.Window), Cooldown: time.Duration(bc.Cooldown), MaxCooldown: time.Duration(bc.MaxCooldown)}
	}
	for _, dc := range deps {
		raw := strings.TrimSpace(repl.ReplaceKnown(dc.URL, ""))
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, "", fmt.Errorf("deployment URL %q must be an absolute http(s) URL", SafeURL(raw))
		}
		if dc.Weight < 0 {
			return nil, "", fmt.Errorf("deployment %s: negative weight", SafeURL(raw))
		}
		id := SafeURL(raw)
		key := pc.ID + "|" + id
		v, _, _ := healthPool.LoadOrNew(key, func() (caddy.Destructor, error) {
			return pooledHealth{health.NewDeployment(pc.ID, id, dc.Weight, b)}, nil
		})
		h := v.(pooledHealth).Deployment
		h.Configure(dc.Weight, b)
		a.healthKey = append(a.healthKey, key)
		p.deployments = append(p.deployments, &Deployment{Health: h, base: strings.TrimRight(raw, "/")})
	}
	if len(p.deployments) == 0 {
		return nil, "no base_url or deployment is set", nil
	}
	p.firstByte = durOr(pc.FirstByteTimeout, 120*time.Second)
	p.idle = durOr(pc.StreamIdleTimeout, 60*time.Second)
	idle := pc.MaxIdleConnsPerHost
	if idle == 0 {
		idle = 256
	}
	t := &reverseproxy.HTTPTransport{
		DialTimeout: caddy.Duration(durOr(pc.DialTimeout, 3*time.Second)),
		KeepAlive:   &reverseproxy.KeepAlive{MaxIdleConnsPerHost: idle},
	}
	for _, d := range p.deployments {
		if strings.HasPrefix(d.base, "https:") {
			t.TLS = &reverseproxy.TLSConfig{}
		}
	}
	if err := t.Provision(ctx); err != nil {
		return nil, "", err
	}
	p.transport = t
	return p, "", nil
}

func durOr(d caddy.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

// SafeURL renders a URL without user info, query or fragment, so it can be
// logged, labelled and shown.
func SafeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User, u.RawQuery, u.Fragment, u.ForceQuery = nil, "", "", false
	return strings.TrimRight(u.String(), "/")
}

// Start launches the supervised health probes.
func (a *App) Start() error {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if !a.storeState.ready.Load() {
		// One quick try, so a fresh start with the database up serves at once.
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		a.checkStore(sctx)
		scancel()
	}
	a.every(ctx, "store check", a.storeCheckInterval, a.checkStore)
	a.every(ctx, "hold sweeper", fixed(min(max(a.holdTTL()/10, time.Second), 30*time.Second)), a.sweepHolds)
	a.every(ctx, "settlement spool", fixed(time.Second), a.drainSpool)
	if a.Redis != nil {
		pushed := map[*Deployment]time.Time{}
		a.every(ctx, "shared health", fixed(syncInterval), func(ctx context.Context) { a.syncHealth(ctx, pushed) })
	}
	if a.lago != nil {
		l := &lagoDrainer{a: a, client: &http.Client{Timeout: 30 * time.Second}, wait: time.Duration(a.lago.Interval)}
		a.every(ctx, "lago", l.next, l.round)
	}
	for _, p := range a.order {
		if p.Config.Probe != nil {
			a.every(ctx, "probe "+p.Config.ID, probeInterval(p), func(ctx context.Context) { a.probeRound(ctx, p) })
		}
	}
	return nil
}

// Stop ends the probes and waits for them.
func (a *App) Stop() error {
	if a.cancel != nil {
		a.cancel()
	}
	a.probes.Wait()
	return nil
}

// Cleanup releases pooled health state and idle upstream connections.
func (a *App) Cleanup() error {
	for _, k := range a.healthKey {
		_, _ = healthPool.Delete(k)
	}
	for _, k := range a.poolKeys {
		_, _ = pools.Delete(k)
	}
	for _, p := range a.order {
		_ = p.transport.Cleanup()
	}
	return nil
}

// Catalog returns the resolved catalog.
func (a *App) Catalog() *catalog.Catalog { return a.catalog }

// Provider returns an active provider by id.
func (a *App) Provider(id string) (*Provider, bool) {
	p, ok := a.providers[id]
	return p, ok
}

// MaxBody is the request body limit.
func (a *App) MaxBody() int64 { return a.MaxBodyBytes }

// Logger is the app's logger.
func (a *App) Logger() *zap.Logger { return a.logger }

// FromContext returns the `llm` app of a Caddy context, with a clear error
// when the config has none.
func FromContext(ctx caddy.Context) (*App, error) {
	v, err := ctx.AppIfConfigured("llm")
	if err != nil {
		return nil, fmt.Errorf("llmgate handlers need the llm app; add the `llm` global option (JSON: apps.llm): %w", err)
	}
	return v.(*App), nil
}

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
