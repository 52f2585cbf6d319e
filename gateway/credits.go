package gateway

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/credits"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/reqview"
	"github.com/llmgate/llmgate/storage"
)

// DefaultMaxOutput is assumed for a model whose catalog entry names no
// output limit, when the request sets no max_tokens.
const DefaultMaxOutput = 4096

// imageTokenBound bounds the prompt tokens one image part can cost.
const imageTokenBound = 10_000

// Admission is a request let through by the credit check: its hold and the
// counters to settle.
type Admission struct {
	HoldID     string
	User       string
	Tier       *credits.Tier
	HeldMicros int64
	EstIn      int64
	EstTokens  int64 // what the tpm counter was charged
	MaxChunks  int64
	minute     int64
	released   bool
}

// Tier returns the tier by name, or the default tier.
func (a *App) Tier(name string) *credits.Tier {
	if t, ok := a.tiers[name]; ok {
		return t
	}
	return a.tiers[a.DefaultTier]
}

// Now is the app's clock (replaceable in tests).
func (a *App) Now() time.Time { return a.now() }

// SetClock replaces the app's clock (tests).
func (a *App) SetClock(now func() time.Time) { a.now = now }

// newRequestID is "req_" and 28 hex digits: the time in nanoseconds, then
// 48 random bits. Ids in time order are appended at the end of the b-trees
// keyed by them (holds, usage, ledger keys) instead of landing on a random
// page each, so a group commit writes a few pages, not one per request.
func newRequestID() string {
	var b [14]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixNano()))
	_, _ = rand.Read(b[8:])
	return "req_" + hex.EncodeToString(b[:])
}

func (a *App) refuse(reason string, e *llmerr.Error) *llmerr.Error {
	a.metrics.refusals.WithLabelValues(reason).Inc()
	return e
}

// StoreUnavailable is the refusal while the store cannot be reached.
func StoreUnavailable() *llmerr.Error {
	e := llmerr.New(http.StatusServiceUnavailable, "store_unavailable", "the gateway's database is unavailable; retry shortly")
	e.RetryAfter = 2 * time.Second
	return e
}

// estimate bounds the prompt tokens and the completion tokens of a request.
// A token of a byte-level BPE covers at least one byte, so the body's size
// bounds its prompt; each image part adds a fixed bound.
func estimate(x *exchange.Exchange, m *catalog.Model, tier *credits.Tier) (in, out int64) {
	in = int64(len(x.Body))
	if x.View.HasImages {
		in += imageTokenBound * int64(1+len(x.Body)/100_000)
	}
	if m.ContextWindow > 0 {
		in = min(in, m.ContextWindow)
	}
	if x.View.Endpoint == reqview.Embeddings {
		return in, 0
	}
	out = x.View.MaxTokens
	if out == 0 {
		out = m.MaxOutputTokens
		if out == 0 {
			out = DefaultMaxOutput
		}
		if tier.MaxTokens > 0 {
			out = min(out, tier.MaxTokens)
		}
	}
	return in, out * max(1, x.View.N)
}

// Admit checks the tier, rate limits and balance for a routed request and
// places a hold for its worst-case cost.
func (a *App) Admit(ctx context.Context, x *exchange.Exchange) (*Admission, *llmerr.Error) {
	id := x.Identity
	if id == nil {
		return nil, llmerr.New(http.StatusUnauthorized, "missing_credentials", "charging needs an authenticated caller")
	}
	if e := a.StoreReady(); e != nil {
		return nil, e
	}
	now := a.now()
	tier := a.Tier(id.Tier)
	var worst int64
	var estIn, estOut int64
	for _, c := range x.Route {
		m, ok := a.catalog.Lookup(c.Model)
		if !ok {
			// A delegated choice: the model is not known until the answer,
			// so the most expensive model the gateway knows bounds it.
			if c.Model == "" {
				if m = a.mostExpensive(); m == nil {
					continue
				}
				in, out := estimate(x, &catalog.Model{ContextWindow: m.ContextWindow}, tier)
				if cost := credits.Cost(in, out, m.InputMicrosPerMTok, m.OutputMicrosPerMTok, a.CreditsPerUSD); cost >= worst {
					worst, estIn, estOut = cost, in, out
				}
			}
			continue
		}
		if !tier.AllowsModel(m.ID) {
			return nil, a.refuse("model_not_allowed", llmerr.New(http.StatusForbidden, "model_not_allowed",
				fmt.Sprintf("your tier (%s) does not include the model `%s`", tier.Name, m.ID)).WithParam("model"))
		}
		in, out := estimate(x, m, tier)
		if cost := credits.Cost(in, out, m.InputMicrosPerMTok, m.OutputMicrosPerMTok, a.CreditsPerUSD); cost >= worst {
			worst, estIn, estOut = cost, in, out
		}
	}
	if x.BYOKPolicy == "require" && AllKeyed(x) {
		// Only the caller's own keys can serve: the fee is all that is at
		// stake. (Under prefer, a refused key falls back to the platform
		// key, so the platform price is held.)
		worst = tier.BYOKFeeMicros
	}
	if tier.MaxTokens > 0 && x.View.MaxTokens > tier.MaxTokens {
		return nil, a.refuse("max_tokens", llmerr.New(http.StatusBadRequest, "max_tokens_exceeded",
			fmt.Sprintf("max_tokens %d is over your tier's cap of %d", x.View.MaxTokens, tier.MaxTokens)).WithParam("max_tokens"))
	}
	adm := &Admission{HoldID: newRequestID(), User: id.User, Tier: tier, EstIn: estIn, MaxChunks: estOut}
	if e := a.takeRate(ctx, adm, estIn+estOut, now); e != nil {
		return nil, e
	}
	if err := a.EnsureAllowance(ctx, id.User, tier, now); err != nil {
		a.releaseRate(ctx, adm)
		a.logger.Error("granting the period allowance failed", zap.String("error", err.Error()))
		return nil, StoreUnavailable()
	}
	err := a.store.Reserve(ctx, storage.Hold{ID: adm.HoldID, User: id.User, AmountMicros: worst, ExpiresAt: now.Add(a.holdTTL()), CreatedAt: now})
	if errors.Is(err, storage.ErrInsufficientCredits) {
		a.releaseRate(ctx, adm)
		b, _ := a.store.GetBalance(ctx, id.User)
		return nil, a.refuse("insufficient_quota", llmerr.New(http.StatusPaymentRequired, "insufficient_quota", fmt.Sprintf(
			"You exceeded your current quota: this request may cost up to %s credits and %s are available.",
			catalog.FormatMicros(worst), catalog.FormatMicros(max(0, b.Available())))))
	}
	if err != nil {
		a.releaseRate(ctx, adm)
		a.logger.Error("placing a hold failed", zap.String("error", err.Error()))
		return nil, StoreUnavailable()
	}
	adm.HeldMicros = worst
	a.metrics.holds.Inc()
	x.RequestID = adm.HoldID
	return adm, nil
}

func (a *App) holdTTL() time.Duration {
	if a.HoldTTL > 0 {
		return time.Duration(a.HoldTTL)
	}
	return 15 * time.Minute
}

// takeRate counts the request against the tier's rpm, tpm and concurrency.
func (a *App) takeRate(ctx context.Context, adm *Admission, tokens int64, now time.Time) *llmerr.Error {
	t := adm.Tier
	adm.minute = now.Unix() / 60
	reset := time.Duration(60-now.Unix()%60) * time.Second
	limited := func(kind string, limit, used int64, retry time.Duration) *llmerr.Error {
		e := llmerr.New(http.StatusTooManyRequests, "rate_limit_exceeded",
			fmt.Sprintf("Rate limit reached for %s: limit %d, used %d. Retry after %ds.", kind, limit, used, int64((retry+time.Second-1)/time.Second)))
		e.RetryAfter = retry
		e.Headers = map[string]string{
			"x-ratelimit-limit-" + kind: strconv.FormatInt(limit, 10), "x-ratelimit-remaining-" + kind: "0",
			"x-ratelimit-reset-" + kind: fmt.Sprintf("%ds", int64((retry+time.Second-1)/time.Second)),
		}
		a.metrics.refusals.WithLabelValues("rate_" + kind).Inc()
		return e
	}
	if t.Concurrency > 0 {
		n, _ := a.cache.Incr(ctx, "rl:conc:"+adm.User, 1, 10*time.Minute)
		if n > t.Concurrency {
			_, _ = a.cache.Incr(ctx, "rl:conc:"+adm.User, -1, 10*time.Minute)
			return limited("concurrency", t.Concurrency, n-1, time.Second)
		}
	}
	if t.RPM > 0 {
		n, _ := a.cache.Incr(ctx, fmt.Sprintf("rl:rpm:%s:%d", adm.User, adm.minute), 1, time.Minute)
		if n > t.RPM {
			a.releaseConcurrency(ctx, adm)
			return limited("requests", t.RPM, n-1, reset)
		}
	}
	if t.TPM > 0 {
		key := fmt.Sprintf("rl:tpm:%s:%d", adm.User, adm.minute)
		n, _ := a.cache.Incr(ctx, key, tokens, time.Minute)
		if n > t.TPM {
			_, _ = a.cache.Incr(ctx, key, -tokens, time.Minute)
			a.releaseConcurrency(ctx, adm)
			return limited("tokens", t.TPM, n-tokens, reset)
		}
		adm.EstTokens = tokens
	}
	return nil
}

func (a *App) releaseConcurrency(ctx context.Context, adm *Admission) {
	if adm.Tier.Concurrency > 0 {
		_, _ = a.cache.Incr(ctx, "rl:conc:"+adm.User, -1, 10*time.Minute)
	}
}

// releaseRate gives back what takeRate took for a request that did not run.
func (a *App) releaseRate(ctx context.Context, adm *Admission) {
	a.releaseConcurrency(ctx, adm)
	if adm.EstTokens > 0 {
		_, _ = a.cache.Incr(ctx, fmt.Sprintf("rl:tpm:%s:%d", adm.User, adm.minute), -adm.EstTokens, time.Minute)
	}
}

// EnsureAllowance grants the tier's allowance once per period (and, for a
// tier that does not roll over, first expires what is left of the last
// period's allowance). Ledger keys make both idempotent across instances.
func (a *App) EnsureAllowance(ctx context.Context, user string, t *credits.Tier, now time.Time) error {
	if t.AllowanceMicros <= 0 {
		return nil
	}
	start, end := t.PeriodOf(now)
	grantKey := fmt.Sprintf("grant:%s:%s:%d", user, t.Name, start.Unix())
	if _, ok := a.cache.Get(ctx, grantKey); ok {
		return nil
	}
	if !t.Rollover {
		pstart, pend := t.PeriodOf(start.Add(-time.Nanosecond))
		prev, err := a.store.GetLedgerEntry(ctx, fmt.Sprintf("grant:%s:%s:%d", user, t.Name, pstart.Unix()))
		switch {
		case errors.Is(err, storage.ErrNotFound):
		case err != nil:
			return err
		default:
			spent, err := a.store.SpentSince(ctx, user, pstart, pend)
			if err != nil {
				return err
			}
			b, err := a.store.GetBalance(ctx, user)
			if err != nil {
				return err
			}
			if unused := min(prev.AmountMicros-spent, b.Available()); unused > 0 {
				_, _, err := a.store.AddCredits(ctx, storage.LedgerEntry{User: user, AmountMicros: -unused, Kind: storage.KindExpire,
					Key: fmt.Sprintf("expire:%s:%s:%d", user, t.Name, pstart.Unix()), Note: "unused allowance of the last period", CreatedAt: now})
				if err != nil && !errors.Is(err, storage.ErrInsufficientCredits) {
					return err
				}
			}
		}
	}
	_, _, err := a.store.AddCredits(ctx, storage.LedgerEntry{User: user, AmountMicros: t.AllowanceMicros, Kind: storage.KindGrant,
		Key: grantKey, Note: "allowance of tier " + t.Name, CreatedAt: now})
	if err != nil {
		return err
	}
	a.cache.Set(ctx, grantKey, []byte("1"), end.Sub(now))
	return nil
}

// Charge is what a settled request cost.
type Charge struct {
	CostMicros    int64
	BalanceMicros int64
	Usage         credits.Usage
	Capped        bool
	// Spooled: the store was unreachable; the charge will be applied later,
	// so the balance is not known now.
	Spooled bool
}

// Settle closes an admission: served requests are charged their real cost
// (capped at the hold, so no balance is ever overspent) with a usage record;
// unserved ones release the hold. It is safe to call once per admission.
func (a *App) Settle(ctx context.Context, adm *Admission, x *exchange.Exchange, served bool, u credits.Usage) (Charge, error) {
	if adm.released {
		return Charge{}, nil
	}
	adm.released = true
	a.metrics.holds.Dec()
	a.releaseConcurrency(ctx, adm)
	if !served {
		if adm.EstTokens > 0 {
			_, _ = a.cache.Incr(ctx, fmt.Sprintf("rl:tpm:%s:%d", adm.User, adm.minute), -adm.EstTokens, time.Minute)
		}
		return Charge{}, a.store.Release(ctx, adm.HoldID)
	}
	model := ""
	var m *catalog.Model
	for _, c := range x.Route {
		if c.Provider == x.Provider {
			model = c.Model
			m, _ = a.catalog.Lookup(c.Model)
			break
		}
	}
	if m == nil && u.Model != "" {
		// A delegated choice: bill the model the answer names, or, if the
		// gateway does not know it, the most expensive it does.
		if m = a.modelByName(u.Model); m == nil {
			m = a.mostExpensive()
		}
		if m != nil {
			model = m.ID
		}
	}
	ch := Charge{Usage: u}
	switch {
	case x.ServedBYOK:
		ch.CostMicros = adm.Tier.BYOKFeeMicros // the caller paid the provider
	case m != nil:
		ch.CostMicros = a.priceUsage(m, u)
	}
	if ch.CostMicros > adm.HeldMicros {
		ch.CostMicros, ch.Capped = adm.HeldMicros, true
		a.logger.Warn("a request cost more than its hold; charged the hold", zap.String("request_id", adm.HoldID), zap.String("model", model))
	}
	if adm.EstTokens > 0 {
		_, _ = a.cache.Incr(ctx, fmt.Sprintf("rl:tpm:%s:%d", adm.User, adm.minute), u.In+u.Out-adm.EstTokens, time.Minute)
	}
	org := ""
	if x.Identity != nil {
		org = x.Identity.Org
	}
	rec := storage.Usage{RequestID: adm.HoldID, User: adm.User, Org: org, Model: model, Provider: x.Provider, TokensIn: u.In, TokensOut: u.Out,
		CacheReadIn: u.CacheRead, LatencyMS: time.Since(x.Start).Milliseconds(), Estimated: !u.Reported, BYOK: x.ServedBYOK, CreatedAt: a.now()}
	set := storage.Settlement{HoldID: adm.HoldID, User: adm.User, CostMicros: ch.CostMicros, Usage: rec,
		Outbox: a.lagoMessage(adm.HoldID, rec, ch.CostMicros)}
	e, _, err := a.store.Settle(ctx, set)
	if err != nil {
		// The database is gone mid-request: keep the settlement locally and
		// apply it when it returns, exactly once (the ledger key).
		if serr := a.spool.add(set); serr != nil {
			return ch, errors.Join(err, serr)
		}
		a.logger.Warn("settlement spooled until the store answers", zap.String("request_id", adm.HoldID), zap.String("error", err.Error()))
		a.metrics.spooled.Inc()
		ch.Spooled = true
		return ch, nil
	}
	ch.BalanceMicros = e.BalanceAfter
	tier := adm.Tier.Name
	a.metrics.tokens.WithLabelValues(model, x.Provider, tier, "in").Add(float64(u.In))
	a.metrics.tokens.WithLabelValues(model, x.Provider, tier, "out").Add(float64(u.Out))
	a.metrics.cost.WithLabelValues(model, x.Provider, tier).Add(float64(ch.CostMicros))
	return ch, nil
}

// sweepHolds releases expired holds (of crashed instances).
func (a *App) sweepHolds(ctx context.Context) {
	if !a.storeState.ready.Load() {
		return
	}
	n, err := a.store.ExpireHolds(ctx, a.now())
	if err != nil && ctx.Err() == nil {
		a.logger.Warn("releasing expired holds failed", zap.String("error", err.Error()))
	}
	if n > 0 {
		a.logger.Info("released expired holds", zap.Int("count", n))
	}
}

// modelByName finds a catalog model by id, alias or upstream name.
func (a *App) modelByName(name string) *catalog.Model {
	if m, ok := a.catalog.Lookup(name); ok {
		return m
	}
	for _, m := range a.catalog.Served() {
		for _, s := range m.Serve {
			if s.Upstream == name {
				return m
			}
		}
	}
	return nil
}

// mostExpensive is the served model with the highest price (input plus output).
func (a *App) mostExpensive() *catalog.Model {
	var best *catalog.Model
	for _, m := range a.catalog.Served() {
		if best == nil || m.InputMicrosPerMTok+m.OutputMicrosPerMTok > best.InputMicrosPerMTok+best.OutputMicrosPerMTok {
			best = m
		}
	}
	return best
}

// priceUsage prices usage at a model's prices: uncached input, cache reads
// and cache writes (at the input price where the catalog names none), output.
func (a *App) priceUsage(m *catalog.Model, u credits.Usage) int64 {
	cr, cw := m.CacheReadMicrosPerMTok, m.CacheWriteMicrosPerMTok
	if cr == 0 {
		cr = m.InputMicrosPerMTok
	}
	if cw == 0 {
		cw = m.InputMicrosPerMTok
	}
	uncached := max(0, u.In-u.CacheRead-u.CacheWrite)
	return credits.CostOf(a.CreditsPerUSD, [2]int64{uncached, m.InputMicrosPerMTok}, [2]int64{u.CacheRead, cr},
		[2]int64{u.CacheWrite, cw}, [2]int64{u.Out, m.OutputMicrosPerMTok})
}
