package gateway

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/classify"
	"github.com/llmgate/llmgate/credits"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/reqview"
)

// AutoConfig configures smart routing: the virtual models ("auto", route
// groups) and, per task category, the models that serve it best first.
type AutoConfig struct {
	// Categories: models in quality order and parameter defaults.
	Categories map[string]*CategoryConfig `json:"categories,omitempty"`
	// Groups are virtual model names. Defaults: auto and auto:best
	// (quality), auto:cheap (cost), auto:fast (latency).
	Groups map[string]*GroupConfig `json:"groups,omitempty"`
	// ContextMarginPercent of a context window is kept free (default 10).
	ContextMarginPercent int `json:"context_margin_percent,omitempty"`
	// Classifier, when set, asks a (cheap) model for the category, falling
	// back to the local classifier on timeout or failure.
	Classifier *ClassifierConfig `json:"classifier,omitempty"`
}

// ClassifierConfig is the model-based classifier.
type ClassifierConfig struct {
	// Model is a catalog model (served by a configured provider).
	Model string `json:"model"`
	// Timeout of the classification call (default 1.5s).
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// CategoryConfig is one task category.
type CategoryConfig struct {
	Models []string `json:"models,omitempty"`
	// Temperature is applied when the client sets none.
	Temperature *float64 `json:"temperature,omitempty"`
}

// GroupConfig is a virtual model.
type GroupConfig struct {
	// Policy ranks eligible models: quality (category order), cost or latency.
	Policy string `json:"policy,omitempty"`
	// Category pins the group to one category instead of classifying.
	Category string `json:"category,omitempty"`
	// Delegate hands the choice to an external router (a WilmerAI
	// instance): the request goes to this provider as it is; the gateway
	// still authenticates, holds and bills, from the model and usage that
	// come back.
	Delegate string `json:"delegate,omitempty"`
}

func f64(v float64) *float64 { return &v }

// defaultCategories name models of the built-in catalog; models nobody
// serves are dropped at routing time.
func defaultCategories() map[string]*CategoryConfig {
	return map[string]*CategoryConfig{
		classify.Coding:    {Models: []string{"claude-sonnet-4-5", "gpt-4.1", "gpt-5", "deepseek-chat", "codestral-latest", "gpt-4o", "gpt-4.1-mini", "gpt-4o-mini", "llama-3.3-70b-versatile"}, Temperature: f64(0.2)},
		classify.Math:      {Models: []string{"o3", "gpt-5", "o4-mini", "deepseek-reasoner", "claude-sonnet-4-5", "gpt-4.1", "gpt-4o", "gpt-4.1-mini", "gpt-4o-mini"}, Temperature: f64(0)},
		classify.Creative:  {Models: []string{"claude-opus-4-1", "claude-sonnet-4-5", "gpt-4o", "gpt-4.1", "mistral-large-latest", "gpt-4o-mini", "llama-3.3-70b-versatile"}, Temperature: f64(0.9)},
		classify.Summarize: {Models: []string{"claude-haiku-4-5", "gpt-4.1-mini", "gemini-2.5-flash", "gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5"}, Temperature: f64(0.3)},
		classify.Extract:   {Models: []string{"gpt-4.1-mini", "gpt-4o-mini", "gemini-2.5-flash", "claude-haiku-4-5", "gpt-4o", "gpt-4.1"}, Temperature: f64(0)},
		classify.Translate: {Models: []string{"gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash", "gpt-4o-mini", "mistral-large-latest"}, Temperature: f64(0.3)},
		classify.Chat:      {Models: []string{"gpt-4o-mini", "claude-haiku-4-5", "gpt-4.1-mini", "gemini-2.5-flash", "llama-3.3-70b-versatile", "gpt-4o"}, Temperature: f64(0.7)},
	}
}

func (a *App) provisionAuto() error {
	ac := a.Auto
	if ac == nil {
		ac = &AutoConfig{}
	}
	cats := defaultCategories()
	for name, c := range ac.Categories {
		if c == nil {
			return fmt.Errorf("auto: category %s is empty", name)
		}
		cats[name] = c
	}
	groups := map[string]*GroupConfig{"auto": {Policy: "quality"}, "auto:best": {Policy: "quality"}, "auto:cheap": {Policy: "cost"}, "auto:fast": {Policy: "latency"}}
	for name, g := range ac.Groups {
		if g == nil {
			g = &GroupConfig{}
		}
		if g.Policy == "" {
			g.Policy = "quality"
		}
		if g.Policy != "quality" && g.Policy != "cost" && g.Policy != "latency" {
			return fmt.Errorf("auto: group %s: policy %q must be quality, cost or latency", name, g.Policy)
		}
		if g.Delegate != "" && !slices.ContainsFunc(a.Providers, func(p *ProviderConfig) bool { return p.ID == g.Delegate }) {
			return fmt.Errorf("auto: group %s delegates to unknown provider %q", name, g.Delegate)
		}
		if g.Category != "" && cats[g.Category] == nil {
			return fmt.Errorf("auto: group %s names unknown category %q", name, g.Category)
		}
		if _, clash := a.catalog.Lookup(name); clash {
			return fmt.Errorf("auto: group %s has the name of a model", name)
		}
		groups[name] = g
	}
	if ac.Classifier != nil {
		if _, ok := a.catalog.Lookup(ac.Classifier.Model); !ok {
			return fmt.Errorf("auto: classifier model %q is not in the catalog", ac.Classifier.Model)
		}
	}
	a.categories, a.groups = cats, groups
	a.margin = ac.ContextMarginPercent
	if a.margin <= 0 || a.margin >= 90 {
		a.margin = 10
	}
	return nil
}

// IsGroup reports whether a model name is a virtual model.
func (a *App) IsGroup(name string) bool { return a.groups[name] != nil }

// Excluded is a model the decision left out, and why.
type Excluded struct {
	Model  string `json:"model"`
	Reason string `json:"reason"`
}

// Decision is a routing decision with its reasons.
type Decision struct {
	Group          string             `json:"group,omitempty"`
	Model          string             `json:"model"`
	Provider       string             `json:"provider"`
	Category       string             `json:"category,omitempty"`
	Policy         string             `json:"policy,omitempty"`
	Needs          []string           `json:"needs"`
	TokenEstimate  int64              `json:"token_estimate"`
	MaxCostMicros  int64              `json:"estimated_max_cost_micros"`
	Fallbacks      []string           `json:"fallbacks"`
	Excluded       []Excluded         `json:"excluded"`
	Defaults       map[string]float64 `json:"defaults_applied,omitempty"`
	SavingMicros   *int64             `json:"saving_vs_most_expensive_micros,omitempty"`
	Reason         string             `json:"reason"`
	Classifier     string             `json:"classifier,omitempty"`
	ClassifyMicros int64              `json:"classify_us,omitempty"`
}

func needsOf(v reqview.View) []string {
	n := []string{}
	if v.HasImages {
		n = append(n, catalog.CapVision)
	}
	if v.HasTools {
		n = append(n, catalog.CapTools)
	}
	if v.JSONMode {
		n = append(n, catalog.CapJSON)
	}
	if v.Stream {
		n = append(n, catalog.CapStreaming)
	}
	return n
}

// promptTokens is the selection estimate of a prompt: about four bytes a
// token (the hold uses a strict upper bound instead).
func promptTokens(body []byte, v reqview.View) int64 {
	n := int64(len(body)+3) / 4
	if v.HasImages {
		n += 1000
	}
	return n
}

// RouteAuto runs the selection pipeline for a virtual model: category,
// tier entitlement, needs, context fit, ranking by the group's policy,
// health; and applies the category's parameter defaults to the body.
func (a *App) RouteAuto(ctx context.Context, x *exchange.Exchange, tier *credits.Tier) (*Decision, *llmerr.Error) {
	g := a.groups[x.View.Model]
	d := &Decision{Group: x.View.Model, Policy: g.Policy, Needs: needsOf(x.View), Excluded: []Excluded{}, Fallbacks: []string{}}
	if g.Delegate != "" {
		if _, ok := a.providers[g.Delegate]; !ok {
			e := llmerr.New(http.StatusServiceUnavailable, "upstream_unavailable", "the router this model delegates to ("+g.Delegate+") is not configured")
			e.RetryAfter = time.Minute
			return nil, e
		}
		d.Provider, d.Policy, d.Reason = g.Delegate, "delegate", "delegated to "+g.Delegate
		d.TokenEstimate = promptTokens(x.Body, x.View)
		x.Route = []exchange.Candidate{{Provider: g.Delegate, Upstream: x.View.Model, Reason: d.Reason}}
		x.RouteKind = x.View.Model + "; " + d.Reason
		return d, nil
	}
	d.Category = g.Category
	if d.Category == "" {
		start := time.Now()
		msgs := classify.MessagesOf(x.Body)
		d.Classifier = "local"
		if a.Auto != nil && a.Auto.Classifier != nil {
			if c, ok := a.classifyLLM(ctx, msgs); ok {
				d.Category, d.Classifier = c, "llm"
			} else {
				d.Classifier = "local (the classifier model did not answer)"
			}
		}
		if d.Category == "" {
			d.Category = classify.Classify(msgs).Category
		}
		el := time.Since(start)
		d.ClassifyMicros = el.Microseconds()
		a.metrics.classify.Observe(el.Seconds())
	}
	cat := a.categories[d.Category]
	if cat == nil {
		cat = a.categories[classify.Chat]
	}
	d.TokenEstimate = promptTokens(x.Body, x.View)
	want := d.TokenEstimate + x.View.MaxTokens

	type cand struct {
		m       *catalog.Model
		inCat   bool
		rank    int
		price   int64
		latency float64
	}
	var kept []cand
	seen := map[string]bool{}
	consider := func(m *catalog.Model, inCat bool, rank int) {
		if seen[m.ID] {
			return
		}
		seen[m.ID] = true
		capErr := capabilityCheck(m, x.View)
		exclude := func(r string) {
			if inCat {
				d.Excluded = append(d.Excluded, Excluded{m.ID, r})
			}
		}
		switch {
		case len(m.Serve) == 0:
			exclude("no configured provider serves it")
		case m.Has(catalog.CapEmbedding):
			exclude("an embedding model")
		case tier != nil && !tier.AllowsModel(m.ID):
			exclude("not in your tier (" + tier.Name + ")")
		case capErr != nil:
			exclude(capErr.Message)
		case m.ContextWindow > 0 && want > m.ContextWindow*int64(100-a.margin)/100:
			exclude(fmt.Sprintf("context window %d is too small for about %d tokens", m.ContextWindow, want))
		case !a.anyAvailable(m):
			exclude("every provider of it is down")
		default:
			kept = append(kept, cand{m: m, inCat: inCat, rank: rank,
				price: m.InputMicrosPerMTok + m.OutputMicrosPerMTok, latency: a.bestLatency(m)})
		}
	}
	for i, id := range cat.Models {
		if m, ok := a.catalog.Lookup(id); ok {
			consider(m, true, i)
		} else {
			d.Excluded = append(d.Excluded, Excluded{id, "not in the catalog"})
		}
	}
	fromCategory := len(kept) > 0
	if !fromCategory {
		// Nothing of the category fits: any served model that does (a larger
		// context, the needed capability), cheapest first.
		for _, m := range a.catalog.Served() {
			consider(m, false, 1000)
		}
	}
	if len(kept) == 0 {
		return nil, a.noModelFits(d, tier)
	}
	switch g.Policy {
	case "cost":
		sort.SliceStable(kept, func(i, j int) bool { return kept[i].price < kept[j].price })
	case "latency":
		sort.SliceStable(kept, func(i, j int) bool { return kept[i].latency < kept[j].latency })
	default:
		sort.SliceStable(kept, func(i, j int) bool { return kept[i].rank < kept[j].rank })
	}
	if !fromCategory && g.Policy == "quality" {
		sort.SliceStable(kept, func(i, j int) bool { return kept[i].price < kept[j].price })
	}
	var route []exchange.Candidate
	for rank, c := range kept {
		for _, s := range c.m.Serve {
			route = append(route, exchange.Candidate{Provider: s.Provider, Upstream: s.Upstream, Model: c.m.ID,
				Priority: rank*1000 + s.Priority, Reason: fmt.Sprintf("%s, rank %d by %s", d.Category, rank+1, g.Policy)})
		}
		if rank > 0 {
			d.Fallbacks = append(d.Fallbacks, c.m.ID)
		}
	}
	best := kept[0]
	d.Model, d.Provider = best.m.ID, best.m.Serve[0].Provider
	d.MaxCostMicros = credits.Cost(d.TokenEstimate, max(x.View.MaxTokens, best.m.MaxOutputTokens), best.m.InputMicrosPerMTok, best.m.OutputMicrosPerMTok, a.CreditsPerUSD)
	switch {
	case !fromCategory:
		d.Reason = "no " + d.Category + " model fits; the cheapest that does"
	case g.Policy == "cost":
		d.Reason = "cheapest capable " + d.Category + " model"
		most := slices.MaxFunc(kept, func(a, b cand) int { return int(a.price - b.price) })
		out := max(x.View.MaxTokens, 1000)
		saving := credits.Cost(d.TokenEstimate, out, most.m.InputMicrosPerMTok, most.m.OutputMicrosPerMTok, a.CreditsPerUSD) -
			credits.Cost(d.TokenEstimate, out, best.m.InputMicrosPerMTok, best.m.OutputMicrosPerMTok, a.CreditsPerUSD)
		d.SavingMicros = &saving
	case g.Policy == "latency":
		d.Reason = "fastest capable " + d.Category + " model"
	default:
		d.Reason = "best capable " + d.Category + " model"
	}
	// Parameter defaults, only where the client set nothing.
	if cat.Temperature != nil && !gjson.GetBytes(x.Body, "temperature").Exists() && x.View.Endpoint != reqview.Embeddings {
		if b, err := sjson.SetBytes(x.Body, "temperature", *cat.Temperature); err == nil {
			x.Body = b
			d.Defaults = map[string]float64{"temperature": *cat.Temperature}
		}
	}
	x.Route, x.RouteKind = route, fmt.Sprintf("%s; category=%s; %s", x.View.Model, d.Category, d.Reason)
	a.metrics.decisions.WithLabelValues(d.Category, d.Model).Inc()
	return d, nil
}

func (a *App) noModelFits(d *Decision, tier *credits.Tier) *llmerr.Error {
	reasons := map[string]int{}
	for _, e := range d.Excluded {
		reasons[e.Reason]++
	}
	for r := range reasons {
		if strings.HasPrefix(r, "context window") {
			return llmerr.New(http.StatusBadRequest, "context_length_exceeded",
				fmt.Sprintf("no available model has a context window for about %d tokens", d.TokenEstimate)).WithParam("messages")
		}
	}
	for r := range reasons {
		if strings.HasPrefix(r, "not in your tier") && tier != nil {
			return llmerr.New(http.StatusForbidden, "model_not_allowed",
				fmt.Sprintf("no model your tier (%s) allows can serve this request; your tier allows: %s", tier.Name, strings.Join(tier.Models, ", "))).WithParam("model")
		}
	}
	if len(d.Needs) > 0 {
		return llmerr.New(http.StatusBadRequest, "model_not_capable",
			fmt.Sprintf("no available model supports %s", strings.Join(d.Needs, " and "))).WithParam("model")
	}
	e := llmerr.New(http.StatusServiceUnavailable, "upstream_unavailable", "no model is available for this request right now")
	e.RetryAfter = time.Second
	return e
}

func (a *App) anyAvailable(m *catalog.Model) bool {
	now := time.Now()
	for _, s := range m.Serve {
		if p, ok := a.providers[s.Provider]; ok {
			for _, d := range p.deployments {
				if d.Health.Available(now) {
					return true
				}
			}
		}
	}
	return false
}

// bestLatency is the lowest EWMA latency among the model's deployments
// (1s when none has been measured).
func (a *App) bestLatency(m *catalog.Model) float64 {
	best := float64(time.Second)
	for _, s := range m.Serve {
		if p, ok := a.providers[s.Provider]; ok {
			for _, d := range p.deployments {
				if l := d.Health.EWMALatency(); l > 0 && float64(l) < best {
					best = float64(l)
				}
			}
		}
	}
	return best
}

// ContextCheck refuses an explicit model whose context window cannot hold
// the request.
func (a *App) ContextCheck(x *exchange.Exchange) *llmerr.Error {
	if len(x.Route) == 0 {
		return nil
	}
	m, ok := a.catalog.Lookup(x.Route[0].Model)
	if !ok || m.ContextWindow == 0 {
		return nil
	}
	if want := promptTokens(x.Body, x.View) + x.View.MaxTokens; want > m.ContextWindow {
		return llmerr.New(http.StatusBadRequest, "context_length_exceeded", fmt.Sprintf(
			"the model `%s` has a context window of %d tokens; this request needs about %d (use model `auto` to pick a larger one)",
			m.ID, m.ContextWindow, want)).WithParam("messages")
	}
	return nil
}

// Route fills the exchange's route for its view: a virtual model through
// the selection pipeline, an explicit one to its providers (with capability
// and context checks); then the caller's own keys order or filter it.
func (a *App) Route(ctx context.Context, x *exchange.Exchange) *llmerr.Error {
	tier := &credits.Tier{Name: "anonymous"} // no identity: no tier, no user keys
	var entitled *credits.Tier
	if x.Identity != nil {
		tier = a.Tier(x.Identity.Tier)
		entitled = tier
	}
	if a.IsGroup(x.View.Model) {
		d, e := a.RouteAuto(ctx, x, entitled)
		if e != nil {
			return e
		}
		x.Decision = d
	} else {
		route, e := a.RouteExplicit(x.View)
		if e != nil {
			return e
		}
		x.Route, x.RouteKind = route, "explicit"
		if e := a.ContextCheck(x); e != nil {
			return e
		}
	}
	return a.ApplyBYOK(x, tier)
}
