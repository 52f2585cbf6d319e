package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/credits"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/storage"
	"github.com/llmgate/llmgate/vault"
)

// BYOKConfig configures the vault of users' own provider keys.
type BYOKConfig struct {
	// KeyRing is comma-separated URL-safe base64 32-byte keys, the first
	// encrypting (default {env.BYOK_ENCRYPTION_KEY}). Empty: BYOK is off.
	KeyRing string `json:"key_ring,omitempty"`
}

// Vault returns the key ring, or nil when BYOK is off.
func (a *App) Vault() *vault.Ring { return a.ring }

// BYOKOff is the refusal while no key ring is configured.
func BYOKOff() *llmerr.Error {
	return llmerr.New(http.StatusServiceUnavailable, "byok_disabled",
		"bring-your-own-key is off on this gateway: the operator has not set BYOK_ENCRYPTION_KEY")
}

func (a *App) provisionBYOK(ctx context.Context, repl *caddy.Replacer) error {
	src := "{env.BYOK_ENCRYPTION_KEY}"
	if a.BYOK != nil && a.BYOK.KeyRing != "" {
		src = a.BYOK.KeyRing
	}
	s := strings.TrimSpace(repl.ReplaceKnown(src, ""))
	if s == "" {
		a.logger.Warn("BYOK is off: no key ring (set BYOK_ENCRYPTION_KEY); stored user keys stay encrypted and unused")
		return nil
	}
	ring, err := vault.ParseRing(s)
	if err != nil {
		return fmt.Errorf("byok key ring: %w", err)
	}
	// A ring that cannot read what is already stored is refused, not
	// discovered request by request.
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	counts, err := a.store.CountBYOKKeys(cctx)
	if err != nil {
		a.logger.Warn("could not check the BYOK key ring against stored keys (store unavailable)", zap.String("error", err.Error()))
	} else {
		var missing []string
		for kid, n := range counts {
			if kid != vault.LegacyKeyID && !ring.Has(kid) {
				missing = append(missing, fmt.Sprintf("%s (%d keys)", kid, n))
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return fmt.Errorf("byok key ring cannot decrypt stored keys encrypted with key id %s: keep the old key in BYOK_ENCRYPTION_KEY (after the new one) until `caddy llm-byok rewrap` has run",
				strings.Join(missing, ", "))
		}
		if counts[vault.LegacyKeyID] > 0 {
			if err := a.checkLegacy(cctx, ring); err != nil {
				return err
			}
		}
	}
	a.ring = ring
	return nil
}

// checkLegacy decrypts one imported Fernet row, so a wrong key fails the load.
func (a *App) checkLegacy(ctx context.Context, ring *vault.Ring) error {
	keys, err := a.store.ListBYOKKeys(ctx, "")
	if err != nil {
		return nil
	}
	for _, k := range keys {
		if k.KeyID == vault.LegacyKeyID {
			if _, _, err := ring.Decrypt(k.Owner, k.Provider, k.Ciphertext); err != nil {
				return errors.New("byok key ring cannot decrypt the imported (Fernet) keys: BYOK_ENCRYPTION_KEY must hold the Ops-Center key")
			}
			return nil
		}
	}
	return nil
}

func byokCacheKey(owner string) string { return "byok:" + owner }

// UserKeys lists an owner's stored keys (ciphertext only) through the cache.
func (a *App) UserKeys(ctx context.Context, owner string) ([]storage.BYOKKey, error) {
	if b, ok := a.cache.Get(ctx, byokCacheKey(owner)); ok {
		var ks []storage.BYOKKey
		if json.Unmarshal(b, &ks) == nil {
			return ks, nil
		}
	}
	ks, err := a.store.ListBYOKKeys(ctx, owner)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(ks)
	a.cache.Set(ctx, byokCacheKey(owner), b, time.Minute)
	return ks, nil
}

// ForgetUserKeys drops an owner's cached keys on every instance.
func (a *App) ForgetUserKeys(ctx context.Context, owner string) {
	a.cache.Delete(ctx, byokCacheKey(owner))
}

// LoadBYOK decrypts the caller's usable keys for this request: active, not
// expired, for configured providers. Imported Fernet rows are re-encrypted in
// the current format as they are first used.
func (a *App) LoadBYOK(ctx context.Context, owner string) (map[string]*exchange.UserKey, error) {
	if a.ring == nil {
		return nil, nil
	}
	ks, err := a.UserKeys(ctx, owner)
	if err != nil {
		return nil, err
	}
	now := a.now()
	out := map[string]*exchange.UserKey{}
	for _, k := range ks {
		if k.Status != "active" || (k.ExpiresAt != nil && !now.Before(*k.ExpiresAt)) || out[k.Provider] != nil {
			continue
		}
		if _, ok := a.providers[k.Provider]; !ok {
			continue
		}
		pt, legacy, err := a.ring.Decrypt(k.Owner, k.Provider, k.Ciphertext)
		if err != nil {
			a.logger.Warn("a stored BYOK key does not decrypt; skipped", zap.String("key_id", k.ID), zap.String("owner", owner))
			continue
		}
		if legacy {
			k.Ciphertext, k.KeyID = a.ring.Encrypt(k.Owner, k.Provider, pt)
			if err := a.store.PutBYOKKey(ctx, k); err == nil {
				a.ForgetUserKeys(ctx, owner)
			}
		}
		out[k.Provider] = &exchange.UserKey{ID: k.ID, Provider: k.Provider, Key: string(pt)}
	}
	return out, nil
}

// MarkKeyInvalid records that a provider refused a user's key, for that
// user only; the provider's health is not touched.
func (a *App) MarkKeyInvalid(owner string, k *exchange.UserKey) {
	k.Invalid = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ks, err := a.store.ListBYOKKeys(ctx, owner)
	if err != nil {
		return
	}
	for _, row := range ks {
		if row.ID == k.ID {
			row.Status = "invalid"
			if a.store.PutBYOKKey(ctx, row) == nil {
				a.ForgetUserKeys(ctx, owner)
			}
			a.logger.Info("a user's provider key was refused by the provider and marked invalid", zap.String("key_id", k.ID), zap.String("provider", k.Provider))
			return
		}
	}
}

// ApplyBYOK orders or filters a route by the caller's keys and tier policy:
// prefer puts providers the caller has a key for first; require keeps only
// those; byok_only providers stay only where the caller has a key.
func (a *App) ApplyBYOK(x *exchange.Exchange, t *credits.Tier) *llmerr.Error {
	x.BYOKPolicy = t.Policy()
	keyed := func(p string) bool { k := x.BYOK[p]; return k != nil && !k.Invalid }
	out := x.Route[:0:0]
	for _, c := range x.Route {
		p := a.providers[c.Provider]
		switch {
		case x.BYOKPolicy == "require" && !keyed(c.Provider):
			continue
		case p != nil && p.Config.BYOKOnly && (x.BYOKPolicy == "never" || !keyed(c.Provider)):
			continue
		}
		if x.BYOKPolicy != "never" && keyed(c.Provider) {
			c.Priority = -1 << 20 // ahead of every platform candidate
			c.Reason += "; the caller's own key"
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Priority < out[j].Priority })
	if len(out) == 0 {
		if x.BYOKPolicy == "require" {
			return llmerr.New(http.StatusForbidden, "byok_required",
				fmt.Sprintf("your tier serves `%s` only with your own provider key; add one with POST /byok/keys", x.View.Model)).WithParam("model")
		}
		return llmerr.New(http.StatusNotFound, "model_not_found",
			fmt.Sprintf("the model `%s` is served here only with your own provider key", x.View.Model)).WithParam("model")
	}
	x.Route = out
	return nil
}

// AllKeyed reports whether every candidate would use the caller's own key,
// so the request can be held at the BYOK fee alone.
func AllKeyed(x *exchange.Exchange) bool {
	if len(x.BYOK) == 0 || x.BYOKPolicy == "never" {
		return false
	}
	for _, c := range x.Route {
		if k := x.BYOK[c.Provider]; k == nil || k.Invalid {
			return false
		}
	}
	return true
}

var byokDesc = prometheus.NewDesc(ns+"_byok_keys", "Stored BYOK keys by the key-ring id that encrypted them; an old key can leave the ring when its count is 0.", []string{"key_id"}, nil)

// byokCollector counts stored keys by key id at scrape time.
type byokCollector struct{ a *App }

func (byokCollector) Describe(ch chan<- *prometheus.Desc) { ch <- byokDesc }

func (c byokCollector) Collect(ch chan<- prometheus.Metric) {
	if c.a.store == nil || c.a.storeState == nil || !c.a.storeState.ready.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.a.store.CountBYOKKeys(ctx)
	if err != nil {
		return
	}
	if c.a.ring != nil {
		for _, id := range c.a.ring.IDs() {
			if _, ok := counts[id]; !ok {
				counts[id] = 0
			}
		}
	}
	for id, n := range counts {
		ch <- prometheus.MustNewConstMetric(byokDesc, prometheus.GaugeValue, float64(n), id)
	}
}
