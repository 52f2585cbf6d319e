package gateway

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llmgate/llmgate/health"
)

// metrics are registered on the Caddy config's registry, so they appear on
// Caddy's own /metrics endpoint and are replaced with each config load.
type metrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	ttfb        *prometheus.HistogramVec
	failovers   *prometheus.CounterVec
	cacheErrors prometheus.Counter
	tokens      *prometheus.CounterVec
	cost        *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	holds       prometheus.Gauge
	outbox      prometheus.Gauge
	decisions   *prometheus.CounterVec
	spooled     prometheus.Counter
	classify    prometheus.Histogram
}

const ns = "llmgate"

func newMetrics(reg *prometheus.Registry, a *App) (*metrics, error) {
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "Proxied LLM requests by provider, model and final status."}, []string{"provider", "model", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "upstream_duration_seconds",
			Help: "Duration of upstream attempts, to the end of the response body.", Buckets: buckets}, []string{"provider"}),
		ttfb: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "upstream_ttfb_seconds",
			Help: "Time from sending an upstream attempt to its first response byte (first event for streams).", Buckets: buckets}, []string{"provider"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "failovers_total",
			Help: "Attempts that failed before the first byte and moved on to the next candidate, by failed provider and reason."}, []string{"provider", "reason"}),
		cacheErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "cache_errors_total",
			Help: "Failed calls to the shared Redis cache, each answered from the in-process fallback."}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "tokens_total",
			Help: "Tokens of settled requests, by model, provider, tier and direction (in, out)."}, []string{"model", "provider", "tier", "direction"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "cost_micros_total",
			Help: "Micro-credits charged, by model, provider and tier."}, []string{"model", "provider", "tier"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "refusals_total",
			Help: "Requests refused before any provider was called, by reason."}, []string{"reason"}),
		holds: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "holds_in_flight",
			Help: "Credit holds placed by this instance and not yet settled or released."}),
		outbox: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "outbox_depth",
			Help: "Metering events waiting in the outbox for Lago."}),
		spooled: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "settlements_spooled_total",
			Help: "Settlements kept in the local spool because the store was unreachable; applied exactly once when it returns."}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "route_decisions_total",
			Help: "Smart-routing decisions by category and chosen model."}, []string{"category", "model"}),
		classify: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "classify_seconds",
			Help: "Time to classify a request's task.", Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2}}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.ttfb, m.failovers, m.cacheErrors, m.tokens, m.cost, m.refusals, m.holds, m.outbox, m.decisions, m.classify, m.spooled, breakerCollector{a}, storeCollector{a}, byokCollector{a}} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}

var breakerDesc = prometheus.NewDesc(ns+"_breaker_state",
	"Circuit breaker of each deployment: 0 closed, 1 open, 2 half-open; overridden deployments report 1 when forced down, 0 when forced up.",
	[]string{"provider", "deployment"}, nil)

var availableDesc = prometheus.NewDesc(ns+"_deployment_available",
	"1 when the deployment takes traffic now, 0 when not.", []string{"provider", "deployment"}, nil)

// breakerCollector reads breaker states at scrape time.
type breakerCollector struct{ a *App }

func (breakerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- breakerDesc
	ch <- availableDesc
}

func (c breakerCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, p := range c.a.order {
		for _, d := range p.deployments {
			s := d.Health.Snapshot(now)
			v := 0.0
			switch {
			case s.Override == health.ForceDown.String():
				v = 1
			case s.Override == health.ForceUp.String():
			case s.Breaker == health.Open.String():
				v = 1
			case s.Breaker == health.HalfOpen.String():
				v = 2
			}
			av := 0.0
			if s.Available {
				av = 1
			}
			ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, v, p.Config.ID, d.Health.ID)
			ch <- prometheus.MustNewConstMetric(availableDesc, prometheus.GaugeValue, av, p.Config.ID, d.Health.ID)
		}
	}
}

var storeUpDesc = prometheus.NewDesc(ns+"_store_up", "1 while the store answers, 0 while it does not.", []string{"backend"}, nil)

// storeCollector reports the store's state at scrape time.
type storeCollector struct{ a *App }

func (storeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- storeUpDesc }

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	v := 0.0
	if c.a.storeState != nil && c.a.storeState.ready.Load() {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(storeUpDesc, prometheus.GaugeValue, v, c.a.storeBackend)
}
