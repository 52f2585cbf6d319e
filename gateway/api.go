package gateway

import (
	"context"
	"slices"
	"time"

	"github.com/llmgate/llmgate/catalog"
	"github.com/llmgate/llmgate/health"
)

// ModelInfo is one entry of GET /models: OpenAI's list item plus price,
// context window and capabilities.
type ModelInfo struct {
	ID                  string   `json:"id"`
	Object              string   `json:"object"`
	Created             int64    `json:"created"`
	OwnedBy             string   `json:"owned_by"`
	Aliases             []string `json:"aliases,omitempty"`
	Providers           []string `json:"providers"`
	ContextWindow       int64    `json:"context_window,omitempty"`
	MaxOutputTokens     int64    `json:"max_output_tokens,omitempty"`
	InputMicrosPerMTok  int64    `json:"input_micros_per_mtok"`
	OutputMicrosPerMTok int64    `json:"output_micros_per_mtok"`
	InputPerMTok        string   `json:"input_per_mtok"`
	OutputPerMTok       string   `json:"output_per_mtok"`
	Capabilities        []string `json:"capabilities"`
}

// ModelInfo describes a catalog model for the API.
func ModelInfoOf(m *catalog.Model) ModelInfo {
	ps := make([]string, len(m.Serve))
	for i, s := range m.Serve {
		ps[i] = s.Provider
	}
	caps := m.Capabilities
	if caps == nil {
		caps = []string{}
	}
	return ModelInfo{
		ID: m.ID, Object: "model", OwnedBy: ps[0], Aliases: m.Aliases, Providers: ps,
		ContextWindow: m.ContextWindow, MaxOutputTokens: m.MaxOutputTokens,
		InputMicrosPerMTok: m.InputMicrosPerMTok, OutputMicrosPerMTok: m.OutputMicrosPerMTok,
		InputPerMTok: catalog.FormatMicros(m.InputMicrosPerMTok), OutputPerMTok: catalog.FormatMicros(m.OutputMicrosPerMTok),
		Capabilities: caps,
	}
}

// ProviderInfo is one entry of GET /providers. It never carries a key.
type ProviderInfo struct {
	ID              string           `json:"id"`
	API             string           `json:"api"`
	Active          bool             `json:"active"`
	SkippedReason   string           `json:"skipped_reason,omitempty"`
	HasKey          bool             `json:"has_key"`
	Priority        int              `json:"priority,omitempty"`
	ServesAllModels bool             `json:"serves_all_models,omitempty"`
	Deployments     []DeploymentInfo `json:"deployments,omitempty"`
	Models          int              `json:"models"`
}

// DeploymentInfo names one deployment without secrets.
type DeploymentInfo struct {
	ID     string `json:"id"`
	Weight int    `json:"weight"`
}

// ProviderInfos lists active then skipped providers.
func (a *App) ProviderInfos() []ProviderInfo {
	counts := map[string]int{}
	for _, m := range a.catalog.Served() {
		for _, s := range m.Serve {
			counts[s.Provider]++
		}
	}
	out := make([]ProviderInfo, 0, len(a.order)+len(a.skipped))
	for _, p := range a.order {
		pi := ProviderInfo{ID: p.Config.ID, API: p.Config.API, Active: true, HasKey: p.HasKey(),
			Priority: p.Config.Priority, ServesAllModels: p.Config.ServesAllModels, Models: counts[p.Config.ID]}
		for _, d := range p.deployments {
			pi.Deployments = append(pi.Deployments, DeploymentInfo{ID: d.Health.ID, Weight: d.Health.Weight})
		}
		out = append(out, pi)
	}
	for _, s := range a.skipped {
		i := slices.IndexFunc(a.Providers, func(pc *ProviderConfig) bool { return pc.ID == s.ID })
		api := "openai"
		if i >= 0 && a.Providers[i].API != "" {
			api = a.Providers[i].API
		}
		out = append(out, ProviderInfo{ID: s.ID, API: api, SkippedReason: s.Reason})
	}
	return out
}

// HealthSnapshots reads every deployment's health.
func (a *App) HealthSnapshots() []health.Snapshot {
	now := time.Now()
	var out []health.Snapshot
	for _, p := range a.order {
		for _, d := range p.deployments {
			out = append(out, d.Health.Snapshot(now))
		}
	}
	return out
}

// SetOverride sets the manual state of a provider's deployments (all of
// them, or the one whose id is deployment). It reports how many it changed.
func (a *App) SetOverride(provider, deployment string, o health.Override) int {
	p, ok := a.providers[provider]
	if !ok {
		return 0
	}
	n := 0
	for _, d := range p.deployments {
		if deployment == "" || d.Health.ID == deployment {
			d.Health.SetOverride(o)
			a.publishOverride(context.Background(), d, o)
			n++
		}
	}
	return n
}
