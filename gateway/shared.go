package gateway

import (
	"context"
	"strconv"
	"time"

	"github.com/llmgate/llmgate/health"
)

// Shared health: with Redis configured, every instance publishes when a
// deployment's breaker opens and when an operator overrides it, and adopts
// what the others published, once a second. Keys live under the cache
// prefix: health:open:<provider>|<deployment> (unix ms, expiring with the
// opening) and health:override:<provider>|<deployment> (up, down, auto).

const syncInterval = time.Second

func openKey(d *Deployment) string { return "health:open:" + d.Health.Provider + "|" + d.Health.ID }
func overrideKey(d *Deployment) string {
	return "health:override:" + d.Health.Provider + "|" + d.Health.ID
}

// publishOverride shares an operator's override with the other instances.
func (a *App) publishOverride(ctx context.Context, d *Deployment, o health.Override) {
	if a.Redis == nil {
		return
	}
	a.cache.Set(ctx, overrideKey(d), []byte(o.String()), 30*24*time.Hour)
}

// syncHealth publishes local breaker openings (pushed remembers what was
// published) and adopts what other instances published.
func (a *App) syncHealth(ctx context.Context, pushed map[*Deployment]time.Time) {
	now := time.Now()
	for _, p := range a.order {
		for _, d := range p.deployments {
			if until := d.Health.OpenUntil(); until.After(now) && !until.Equal(pushed[d]) {
				a.cache.Set(ctx, openKey(d), []byte(strconv.FormatInt(until.UnixMilli(), 10)), until.Sub(now))
				pushed[d] = until
			}
			if v, ok := a.cache.Get(ctx, openKey(d)); ok {
				if ms, err := strconv.ParseInt(string(v), 10, 64); err == nil {
					d.Health.AdoptOpen(now, time.UnixMilli(ms))
				}
			}
			if v, ok := a.cache.Get(ctx, overrideKey(d)); ok {
				if o, ok := health.ParseOverride(string(v)); ok && o != d.Health.Override() {
					d.Health.SetOverride(o)
				}
			}
		}
	}
}
