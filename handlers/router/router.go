// Package router is the llm_router handler: it reads the request body once,
// validates it, and resolves the requested model to ordered candidates.
package router

import (
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/reqview"
)

func init() {
	caddy.RegisterModule(&Handler{})
	httpcaddyfile.RegisterHandlerDirective("llm_router", parseCaddyfile)
}

// Handler is http.handlers.llm_router.
//
// It handles POST requests whose path ends in /chat/completions,
// /completions or /embeddings, answering anything else with an
// OpenAI-shaped 404 or 405.
type Handler struct {
	// MaxBodyBytes overrides the llm app's body limit for this route.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// AllowUnauthenticated serves callers no auth step has recognised.
	// Without it, a request reaching the router without an identity is
	// refused with 401.
	AllowUnauthenticated bool `json:"allow_unauthenticated,omitempty"`
	// BodyTimeout bounds reading the request body (default 30s): a client
	// trickling its body (slowloris) gets 408. Only the body: a response
	// may stream for as long as it needs.
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`

	app *gateway.App
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.llm_router", New: func() caddy.Module { return new(Handler) }}
}

// Provision finds the llm app.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := gateway.FromContext(ctx)
	if err != nil {
		return err
	}
	h.app = app
	if h.MaxBodyBytes < 0 {
		return errors.New("max_body_bytes must be positive")
	}
	if h.BodyTimeout < 0 {
		return errors.New("body_timeout must be positive")
	}
	if h.BodyTimeout == 0 {
		h.BodyTimeout = caddy.Duration(gateway.DefaultBodyTimeout)
	}
	return nil
}

func (h *Handler) maxBody() int64 {
	if h.MaxBodyBytes > 0 {
		return h.MaxBodyBytes
	}
	return h.app.MaxBody()
}

// ServeHTTP validates and routes the request, then calls the next handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	x, r := exchange.Attach(r)
	if x.Identity == nil && !h.AllowUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="llmgate"`)
		llmerr.Write(w, llmerr.New(http.StatusUnauthorized, "missing_credentials", "this route requires authentication"))
		return nil
	}
	ep := reqview.EndpointFor(r.URL.Path)
	if ep == reqview.Unknown {
		llmerr.Write(w, llmerr.New(http.StatusNotFound, "unknown_endpoint", "no such endpoint: "+r.Method+" "+r.URL.Path))
		return nil
	}
	if e := h.app.StoreReady(); e != nil {
		llmerr.Write(w, e)
		return nil
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		llmerr.Write(w, llmerr.New(http.StatusMethodNotAllowed, "method_not_allowed", r.URL.Path+" accepts POST only"))
		return nil
	}
	body, e := gateway.ReadBody(w, r, h.maxBody(), time.Duration(h.BodyTimeout))
	if e != nil {
		llmerr.Write(w, e)
		return nil
	}
	view, e := reqview.Parse(ep, body)
	if e != nil {
		llmerr.Write(w, e)
		return nil
	}
	x.Body, x.View = body, view
	if e := h.app.Route(r.Context(), x); e != nil {
		llmerr.Write(w, e)
		return nil
	}
	return next.ServeHTTP(w, r)
}

// parseCaddyfile sets up the handler from Caddyfile tokens:
//
//	llm_router {
//	    max_body <size>
//	    allow_unauthenticated
//	}
func parseCaddyfile(hc httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h := new(Handler)
	err := h.UnmarshalCaddyfile(hc.Dispenser)
	return h, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_body":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(s)
			if err != nil || n == 0 || n > 1<<40 {
				return d.Errf("max_body: %q is not a size such as 10MB", s)
			}
			h.MaxBodyBytes = int64(n)
		case "allow_unauthenticated":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.AllowUnauthenticated = true
		case "body_timeout":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			v, err := caddy.ParseDuration(s)
			if err != nil || v <= 0 {
				return d.Errf("body_timeout: %q is not a positive duration", s)
			}
			h.BodyTimeout = caddy.Duration(v)
		default:
			return d.Errf("unknown llm_router option %q", d.Val())
		}
	}
	return nil
}

var (
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
