package credits

import (
	"fmt"
	"path"
	"time"
)

// Tier is what a class of users gets.
type Tier struct {
	Name string `json:"name"`
	// AllowanceMicros is granted each period.
	AllowanceMicros int64 `json:"allowance_micros,omitempty"`
	// Period is "month" (calendar month, UTC; the default) or a duration
	// such as "24h" (periods aligned to the Unix epoch).
	Period string `json:"period,omitempty"`
	// Rollover keeps unused allowance into the next period; without it the
	// unused part of the last period's allowance expires. Purchased credits
	// never expire.
	Rollover bool `json:"rollover,omitempty"`
	// Models the tier may use, as globs (path.Match); empty allows all.
	Models []string `json:"models,omitempty"`
	// MaxTokens caps max_tokens per request; 0 is no cap.
	MaxTokens int64 `json:"max_tokens,omitempty"`
	// RPM, TPM and Concurrency limit each user; 0 is unlimited.
	RPM         int64 `json:"rpm,omitempty"`
	TPM         int64 `json:"tpm,omitempty"`
	Concurrency int64 `json:"concurrency,omitempty"`
	// BYOK allows the user's own provider keys, charged BYOKFeeMicros per request.
	BYOK          bool  `json:"byok,omitempty"`
	BYOKFeeMicros int64 `json:"byok_fee_micros,omitempty"`
	// BYOKPolicy, with BYOK: "prefer" (the default: providers the caller has
	// a key for go first, the platform key is the fallback) or "require"
	// (only the caller's keys are used).
	BYOKPolicy string `json:"byok_policy,omitempty"`
}

// Policy is the tier's BYOK policy: never, prefer or require.
func (t *Tier) Policy() string {
	switch {
	case !t.BYOK:
		return "never"
	case t.BYOKPolicy == "require":
		return "require"
	}
	return "prefer"
}

// DefaultTiers mirror the Ops-Center plans; every value can be replaced in config.
func DefaultTiers() []Tier {
	return []Tier{
		{Name: "trial", AllowanceMicros: 1_000_000, Models: []string{"*mini*", "*nano*", "*haiku*", "*flash*", "llama*", "mistral-small*", "deepseek-chat"},
			MaxTokens: 4096, RPM: 10, TPM: 40_000, Concurrency: 2},
		{Name: "starter", AllowanceMicros: 10_000_000, MaxTokens: 8192, RPM: 60, TPM: 200_000, Concurrency: 5, BYOK: true, BYOKFeeMicros: 1_000},
		{Name: "professional", AllowanceMicros: 50_000_000, MaxTokens: 32_768, RPM: 300, TPM: 1_000_000, Concurrency: 20, BYOK: true, BYOKFeeMicros: 500},
		{Name: "enterprise", AllowanceMicros: 500_000_000, RPM: 3000, TPM: 10_000_000, Concurrency: 100, BYOK: true},
	}
}

// Validate checks a tier.
func (t *Tier) Validate() error {
	if t.Name == "" {
		return fmt.Errorf("a tier needs a name")
	}
	if t.AllowanceMicros < 0 || t.MaxTokens < 0 || t.RPM < 0 || t.TPM < 0 || t.Concurrency < 0 || t.BYOKFeeMicros < 0 {
		return fmt.Errorf("tier %s: negative value", t.Name)
	}
	if t.BYOKPolicy != "" && t.BYOKPolicy != "prefer" && t.BYOKPolicy != "require" {
		return fmt.Errorf("tier %s: byok policy %q must be prefer or require", t.Name, t.BYOKPolicy)
	}
	if t.Period != "" && t.Period != "month" {
		d, err := time.ParseDuration(t.Period)
		if err != nil || d < time.Minute {
			return fmt.Errorf("tier %s: period %q must be month or a duration of at least 1m", t.Name, t.Period)
		}
	}
	for _, g := range t.Models {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("tier %s: bad model glob %q", t.Name, g)
		}
	}
	return nil
}

// PeriodOf returns the period containing now: [start, end).
func (t *Tier) PeriodOf(now time.Time) (start, end time.Time) {
	now = now.UTC()
	if t.Period == "" || t.Period == "month" {
		start = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	}
	d, _ := time.ParseDuration(t.Period)
	start = time.Unix(0, now.UnixNano()/int64(d)*int64(d)).UTC()
	return start, start.Add(d)
}

// AllowsModel reports whether the tier may use the model.
func (t *Tier) AllowsModel(id string) bool {
	if len(t.Models) == 0 {
		return true
	}
	for _, g := range t.Models {
		if ok, _ := path.Match(g, id); ok {
			return true
		}
	}
	return false
}
