package gateway

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/llmgate/llmgate/health"
)

// probeInterval is the provider's probe interval with ±10% jitter, and 0
// the first time, so a provider is probed as soon as the config loads.
func probeInterval(p *Provider) func() time.Duration {
	interval, first := durOr(p.Config.Probe.Interval, 30*time.Second), true
	return func() time.Duration {
		if first {
			first = false
			return 0
		}
		return interval + time.Duration(rand.Int64N(int64(interval)/5+1)) - interval/10
	}
}

// probeRound actively checks each deployment of p once.
func (a *App) probeRound(ctx context.Context, p *Provider) {
	for _, d := range p.deployments {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		err := a.probeOnce(ctx, p, d)
		o := health.Outcome{OK: err == nil, Latency: time.Since(start)}
		if err != nil {
			o.Err = err.Error()
			a.logger.Debug("health probe failed", zap.String("provider", p.Config.ID),
				zap.String("deployment", d.Health.ID), zap.String("error", o.Err))
		}
		if ctx.Err() == nil {
			d.Health.RecordProbe(time.Now(), o)
		}
	}
}

// ProbeHook, when set (tests), runs at the start of every probe.
var ProbeHook func(provider string)

func (a *App) probeOnce(ctx context.Context, p *Provider, d *Deployment) error {
	if ProbeHook != nil {
		ProbeHook(p.Config.ID)
	}
	pc := p.Config.Probe
	path := pc.Path
	if path == "" {
		path = "/models"
	}
	ctx, cancel := context.WithTimeout(ctx, durOr(pc.Timeout, 5*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	if err != nil {
		return err
	}
	if p.key != "" {
		req.Header.Set("Authorization", "Bearer "+p.key)
	}
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("probe: %s", describeErr(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("probe: HTTP %d", resp.StatusCode)
	}
	return nil
}

// CheckKey reports whether the provider accepts key (GET <base>/models).
// The key goes only to this provider.
func (p *Provider) CheckKey(ctx context.Context, key string) bool {
	d := p.deployments[0]
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/models", nil)
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode/100 == 2
}
