// Package catalog holds what llmgate knows about models: who serves them under
// which upstream name, their list prices as integers, context windows and
// capabilities. A built-in catalog ships embedded; configuration overrides or
// extends it model by model.
package catalog

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Capability names understood in config and reported by /models.
const (
	CapVision    = "vision"
	CapTools     = "tools"
	CapJSON      = "json"
	CapStreaming = "streaming"
	CapEmbedding = "embedding"
)

var knownCaps = []string{CapVision, CapTools, CapJSON, CapStreaming, CapEmbedding}

// Serve says that a provider serves a model under an upstream name.
type Serve struct {
	Provider string `json:"provider"`
	// Upstream is the model name sent to the provider; empty means the model id.
	Upstream string `json:"upstream,omitempty"`
	// Priority orders candidates: lower first. Zero takes the provider's priority.
	Priority int `json:"priority,omitempty"`
}

// Model is one catalog entry. Prices are integer micro-credits per one million
// tokens (with the default 1 credit = 1 USD, $2.50 per 1M tokens is 2500000).
type Model struct {
	ID                  string   `json:"id"`
	Aliases             []string `json:"aliases,omitempty"`
	Serve               []Serve  `json:"serve,omitempty"`
	InputMicrosPerMTok  int64    `json:"input_micros_per_mtok,omitempty"`
	OutputMicrosPerMTok int64    `json:"output_micros_per_mtok,omitempty"`
	// Prompt-cache prices (Anthropic); zero prices cached tokens as input.
	CacheReadMicrosPerMTok  int64    `json:"cache_read_micros_per_mtok,omitempty"`
	CacheWriteMicrosPerMTok int64    `json:"cache_write_micros_per_mtok,omitempty"`
	ContextWindow           int64    `json:"context_window,omitempty"`
	MaxOutputTokens         int64    `json:"max_output_tokens,omitempty"`
	Capabilities            []string `json:"capabilities,omitempty"`
}

// Has reports whether the model has capability c.
func (m *Model) Has(c string) bool { return slices.Contains(m.Capabilities, c) }

//go:embed builtin.json
var builtinJSON []byte

// Builtin returns a fresh copy of the embedded catalog.
func Builtin() []Model {
	var ms []Model
	if err := json.Unmarshal(builtinJSON, &ms); err != nil {
		panic("catalog: embedded builtin.json is invalid: " + err.Error())
	}
	return ms
}

// Merge lays overrides over base by model id: a field set in the override
// replaces the base's; serve entries are added to the base's, an entry for a
// provider already listed replaces that entry. New ids are appended.
func Merge(base, overrides []Model) []Model {
	out := slices.Clone(base)
	idx := make(map[string]int, len(out))
	for i, m := range out {
		idx[m.ID] = i
	}
	for _, o := range overrides {
		i, ok := idx[o.ID]
		if !ok {
			idx[o.ID] = len(out)
			out = append(out, o)
			continue
		}
		m := out[i]
		if len(o.Aliases) > 0 {
			m.Aliases = o.Aliases
		}
		for _, s := range o.Serve {
			j := slices.IndexFunc(m.Serve, func(x Serve) bool { return x.Provider == s.Provider })
			m.Serve = slices.Clone(m.Serve)
			if j >= 0 {
				m.Serve[j] = s
			} else {
				m.Serve = append(m.Serve, s)
			}
		}
		if o.InputMicrosPerMTok != 0 {
			m.InputMicrosPerMTok = o.InputMicrosPerMTok
		}
		if o.OutputMicrosPerMTok != 0 {
			m.OutputMicrosPerMTok = o.OutputMicrosPerMTok
		}
		if o.ContextWindow != 0 {
			m.ContextWindow = o.ContextWindow
		}
		if o.CacheReadMicrosPerMTok != 0 {
			m.CacheReadMicrosPerMTok = o.CacheReadMicrosPerMTok
		}
		if o.CacheWriteMicrosPerMTok != 0 {
			m.CacheWriteMicrosPerMTok = o.CacheWriteMicrosPerMTok
		}
		if o.MaxOutputTokens != 0 {
			m.MaxOutputTokens = o.MaxOutputTokens
		}
		if len(o.Capabilities) > 0 {
			m.Capabilities = o.Capabilities
		}
		out[i] = m
	}
	return out
}

// Validate checks one model entry.
func (m *Model) Validate() error {
	if m.ID == "" {
		return fmt.Errorf("model without id")
	}
	if m.InputMicrosPerMTok < 0 || m.OutputMicrosPerMTok < 0 {
		return fmt.Errorf("model %s: negative price", m.ID)
	}
	if m.ContextWindow < 0 || m.MaxOutputTokens < 0 {
		return fmt.Errorf("model %s: negative context window or max output tokens", m.ID)
	}
	for _, c := range m.Capabilities {
		if !slices.Contains(knownCaps, c) {
			return fmt.Errorf("model %s: unknown capability %q (known: %s)", m.ID, c, strings.Join(knownCaps, ", "))
		}
	}
	for _, s := range m.Serve {
		if s.Provider == "" {
			return fmt.Errorf("model %s: serve entry without provider", m.ID)
		}
	}
	return nil
}

// Catalog is an immutable, indexed set of models, built once per config load.
type Catalog struct {
	models []*Model
	byName map[string]*Model
}

// Candidate is one provider that can serve a resolved model.
type Candidate struct {
	Provider string
	Upstream string
	Priority int
}

// New indexes models. providerPriority gives each active provider's default
// priority; serve entries naming any other provider are dropped, so a model
// is listed only while someone configured can serve it. catchAll lists
// providers that serve every model (a LiteLLM proxy) under the model's id.
func New(models []Model, providerPriority map[string]int, catchAll []string) (*Catalog, error) {
	c := &Catalog{byName: make(map[string]*Model, len(models)*2)}
	for i := range models {
		m := models[i]
		if err := m.Validate(); err != nil {
			return nil, err
		}
		var serve []Serve
		for _, s := range m.Serve {
			p, ok := providerPriority[s.Provider]
			if !ok {
				continue
			}
			if s.Upstream == "" {
				s.Upstream = m.ID
			}
			if s.Priority == 0 {
				s.Priority = p
			}
			serve = append(serve, s)
		}
		for _, pid := range catchAll {
			if !slices.ContainsFunc(serve, func(s Serve) bool { return s.Provider == pid }) {
				serve = append(serve, Serve{Provider: pid, Upstream: m.ID, Priority: providerPriority[pid]})
			}
		}
		sort.SliceStable(serve, func(a, b int) bool { return serve[a].Priority < serve[b].Priority })
		m.Serve = serve
		mp := &m
		for _, name := range append([]string{m.ID}, m.Aliases...) {
			if prev, dup := c.byName[name]; dup && prev.ID != m.ID {
				return nil, fmt.Errorf("model name %q is used by both %s and %s", name, prev.ID, m.ID)
			}
			c.byName[name] = mp
		}
		c.models = append(c.models, mp)
	}
	return c, nil
}

// Lookup resolves a model id or alias.
func (c *Catalog) Lookup(name string) (*Model, bool) {
	m, ok := c.byName[name]
	return m, ok
}

// Served lists the models at least one active provider serves, in catalog order.
func (c *Catalog) Served() []*Model {
	out := make([]*Model, 0, len(c.models))
	for _, m := range c.models {
		if len(m.Serve) > 0 {
			out = append(out, m)
		}
	}
	return out
}

// ParseMicros parses a decimal amount of credits ("2.50", "0.15", "10") into
// integer micro-credits without going through floating point. More than six
// decimal places is an error rather than a silent rounding.
func ParseMicros(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty amount")
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("amount %q is negative", s)
	}
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 6 {
		return 0, fmt.Errorf("amount %q has more than 6 decimal places", s)
	}
	if whole == "" {
		whole = "0"
	}
	var w int64
	for _, r := range whole {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("amount %q is not a decimal number", s)
		}
		w = w*10 + int64(r-'0')
		if w > 1<<40 {
			return 0, fmt.Errorf("amount %q is too large", s)
		}
	}
	var f int64
	for i := 0; i < 6; i++ {
		f *= 10
		if i < len(frac) {
			r := frac[i]
			if r < '0' || r > '9' {
				return 0, fmt.Errorf("amount %q is not a decimal number", s)
			}
			f += int64(r - '0')
		}
	}
	return w*1_000_000 + f, nil
}

// FormatMicros renders micro-credits as a decimal string ("2.5").
func FormatMicros(v int64) string {
	neg := v < 0
	if neg {
		v = -v
	}
	s := fmt.Sprintf("%d.%06d", v/1_000_000, v%1_000_000)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if neg {
		s = "-" + s
	}
	return s
}
