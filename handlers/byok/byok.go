// Package byok is the llm_byok handler: it puts the caller's own provider
// keys, decrypted for this request only, into the exchange, so llm_router
// can prefer (or require) the providers they hold keys for and llm_upstream
// can call those providers with them. It sits after llm_auth and before
// llm_router.
package byok

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/llmerr"
)

func init() {
	caddy.RegisterModule(&Handler{})
	httpcaddyfile.RegisterHandlerDirective("llm_byok", parseCaddyfile)
}

// Handler is http.handlers.llm_byok.
type Handler struct {
	app    *gateway.App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.llm_byok", New: func() caddy.Module { return new(Handler) }}
}

// Provision finds the llm app.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := gateway.FromContext(ctx)
	h.app, h.logger = app, ctx.Logger()
	return err
}

// ServeHTTP loads the caller's keys when their tier allows BYOK.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	x, r := exchange.Attach(r)
	if x.Identity == nil || h.app.Vault() == nil || h.app.Tier(x.Identity.Tier).Policy() == "never" {
		return next.ServeHTTP(w, r)
	}
	keys, err := h.app.LoadBYOK(r.Context(), x.Identity.User)
	if err != nil {
		h.logger.Error("loading the caller's keys failed", zap.String("error", err.Error()))
		llmerr.Write(w, gateway.StoreUnavailable())
		return nil
	}
	x.BYOK = keys
	return next.ServeHTTP(w, r)
}

// parseCaddyfile reads `llm_byok`, which takes no options: the key ring is
// configured in the llm global option (byok { key_ring … }).
func parseCaddyfile(hc httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h := new(Handler)
	return h, h.UnmarshalCaddyfile(hc.Dispenser)
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("llm_byok takes no options")
	}
	return nil
}

var (
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
