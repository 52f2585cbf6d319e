// Package upstream is the llm_upstream handler: the health-aware pick among
// the router's candidates, key injection, model rewrite and failover before
// the first byte, over Caddy's reverse-proxy HTTP transport.
package upstream

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/llmerr"
)

func init() {
	caddy.RegisterModule(&Handler{})
	httpcaddyfile.RegisterHandlerDirective("llm_upstream", parseCaddyfile)
}

// Handler is http.handlers.llm_upstream. It is terminal: it answers every
// request itself and never calls the next handler.
type Handler struct {
	app *gateway.App
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.llm_upstream", New: func() caddy.Module { return new(Handler) }}
}

// Provision finds the llm app.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := gateway.FromContext(ctx)
	h.app = app
	return err
}

// ServeHTTP proxies the routed request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	x := exchange.From(r.Context())
	if x == nil {
		llmerr.Write(w, llmerr.New(http.StatusInternalServerError, "misconfigured", "llm_upstream needs llm_router before it in the route"))
		return nil
	}
	if err := h.app.Proxy(w, r, x); err != nil {
		llmerr.Write(w, llmerr.From(err))
	}
	return nil
}

// parseCaddyfile reads `llm_upstream`, which takes no options yet: providers,
// deployments and timeouts are configured in the llm global option.
func parseCaddyfile(hc httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h := new(Handler)
	return h, h.UnmarshalCaddyfile(hc.Dispenser)
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("unknown llm_upstream option %q", d.Val())
	}
	return nil
}

var (
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
