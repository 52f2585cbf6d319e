// Package exchange is the request-scoped record that rides in the request
// context through the llmgate handlers: each step writes what it learned so no
// later step parses the body again or asks the store twice.
package exchange

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/llmgate/llmgate/reqview"
)

// Candidate is one way to serve the request, in the order to try.
type Candidate struct {
	Provider string // provider id
	Upstream string // model name sent to the provider
	Model    string // catalog model id
	Priority int
	Reason   string
}

// Attempt records one try against a provider deployment.
type Attempt struct {
	Provider   string
	Deployment string
	Status     int // 0 when no response arrived
	Err        string
	Latency    time.Duration
	TTFB       time.Duration
}

// Identity is who is calling, set by llm_auth.
type Identity struct {
	User  string
	Org   string
	Tier  string
	KeyID string
	Roles []string
}

// UserKey is one of the caller's own provider keys, decrypted for this
// request only.
type UserKey struct {
	ID       string
	Provider string
	Key      string
	// Invalid is set when the provider refused the key during this request.
	Invalid bool
}

// Exchange is everything learned about one request.
type Exchange struct {
	Start time.Time
	// RequestID names the request in the ledger and usage records (set
	// when credits are held).
	RequestID string
	// Identity is nil until an auth step has recognised the caller.
	Identity *Identity
	Body     []byte
	View     reqview.View
	// Route is the ordered candidate list and a short label of how it was chosen.
	Route     []Candidate
	RouteKind string
	// Decision is the smart-routing decision (a *gateway.Decision), when
	// the request named a virtual model.
	Decision any

	Attempts    []Attempt
	Provider    string
	Deployment  string
	ServedModel string
	Status      int
	UpstreamDur time.Duration
	TTFB        time.Duration

	// BYOK holds the caller's usable keys by provider (llm_byok), and
	// BYOKPolicy the tier's policy: prefer, require or never.
	BYOK       map[string]*UserKey
	BYOKPolicy string
	// ServedBYOK is set when the response came through the caller's own key.
	ServedBYOK bool

	// Set by llm_credits when the request is settled.
	CostMicros, BalanceMicros int64
	TokensIn, TokensOut       int64
	UsageEstimated            bool
}

type ctxKey struct{}

// With returns ctx carrying x.
func With(ctx context.Context, x *Exchange) context.Context {
	return context.WithValue(ctx, ctxKey{}, x)
}

// From returns the exchange in ctx, or nil.
func From(ctx context.Context) *Exchange {
	x, _ := ctx.Value(ctxKey{}).(*Exchange)
	return x
}

// Failovers counts attempts beyond the first.
func (x *Exchange) Failovers() int {
	if len(x.Attempts) == 0 {
		return 0
	}
	return len(x.Attempts) - 1
}

// Placeholders lists the {llm.*} placeholders the exchange answers.
var Placeholders = []string{
	"llm.provider", "llm.deployment", "llm.model", "llm.model_requested", "llm.endpoint", "llm.stream",
	"llm.route", "llm.candidates", "llm.attempts", "llm.failovers", "llm.status", "llm.upstream_ms", "llm.ttfb_ms",
	"llm.user", "llm.org", "llm.tier", "llm.key_id", "llm.request_id", "llm.cost_micros", "llm.balance_micros",
	"llm.tokens.prompt", "llm.tokens.completion", "llm.usage_estimated", "llm.byok",
}

// Lookup answers one {llm.*} placeholder.
func (x *Exchange) Lookup(key string) (any, bool) {
	if !strings.HasPrefix(key, "llm.") {
		return nil, false
	}
	switch key[4:] {
	case "user", "org", "tier", "key_id":
		id := x.Identity
		switch {
		case id == nil:
			return "", true
		case key == "llm.user":
			return id.User, true
		case key == "llm.org":
			return id.Org, true
		case key == "llm.tier":
			return id.Tier, true
		}
		return id.KeyID, true
	case "byok":
		return x.ServedBYOK, true
	case "request_id":
		return x.RequestID, true
	case "cost_micros":
		return x.CostMicros, true
	case "balance_micros":
		return x.BalanceMicros, true
	case "tokens.prompt":
		return x.TokensIn, true
	case "tokens.completion":
		return x.TokensOut, true
	case "usage_estimated":
		return x.UsageEstimated, true
	case "provider":
		return x.Provider, true
	case "deployment":
		return x.Deployment, true
	case "model":
		return x.ServedModel, true
	case "model_requested":
		return x.View.Model, true
	case "endpoint":
		return x.View.Endpoint.String(), true
	case "stream":
		return x.View.Stream, true
	case "route":
		return x.RouteKind, true
	case "candidates":
		names := make([]string, len(x.Route))
		for i, c := range x.Route {
			names[i] = c.Provider + "/" + c.Upstream
		}
		return strings.Join(names, ","), true
	case "attempts":
		return len(x.Attempts), true
	case "failovers":
		return x.Failovers(), true
	case "status":
		return x.Status, true
	case "upstream_ms":
		return strconv.FormatInt(x.UpstreamDur.Milliseconds(), 10), true
	case "ttfb_ms":
		return strconv.FormatInt(x.TTFB.Milliseconds(), 10), true
	}
	return nil, false
}

// Attach creates the exchange for r (or returns the one already there),
// stores it in r's context and registers the {llm.*} placeholders with
// Caddy's replacer. It returns the request to pass on.
func Attach(r *http.Request) (*Exchange, *http.Request) {
	if x := From(r.Context()); x != nil {
		return x, r
	}
	x := &Exchange{Start: time.Now()}
	r = r.WithContext(With(r.Context(), x))
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(x.Lookup)
	}
	return x, r
}
