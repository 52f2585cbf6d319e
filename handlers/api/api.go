// Package api is the llm_api handler: the gateway's JSON endpoints (models,
// providers, provider health and the admin override). Requests for other
// paths go on to the next handler, so it sits in front of llm_router.
package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/auth"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/health"
	"github.com/llmgate/llmgate/llmerr"
)

func init() {
	caddy.RegisterModule(&Handler{})
	httpcaddyfile.RegisterHandlerDirective("llm_api", parseCaddyfile)
}

// Handler is http.handlers.llm_api. Paths are matched after any prefix the
// route strips (mount it inside handle_path):
//
//	GET  /models                     models this caller may use
//	GET  /models/{id}                one model
//	POST /models/select              the routing decision for a body, without calling a provider
//	GET  /providers                  configured providers, never their keys
//	GET  /providers/health           per deployment health
//	POST /providers/{id}/override    {"state":"up|down|auto","deployment":"…"} (admin)
//	GET  /credits                    the caller's balance, tier, allowance and period (admin: ?user=)
//	POST /credits/add                admin: {"user","amount_micros","idempotency_key","reason"}
//	GET  /usage                      usage records (admin: ?user=); since, until, model, limit, before
//	GET  /usage/summary              totals by day and model
//	POST /byok/keys                  {"provider","api_key","name","expires_at","verify"}: store your own key (masked on output)
//	GET  /byok/keys                  your keys, masked (admin: ?user=, or ?all)
//	PATCH /byok/keys/{id}            {"api_key","name","expires_at"}: rotate or rename
//	DELETE /byok/keys/{id}           204
//	POST /keys                       {"name":"…","user":"… (admin)","scopes":[…]}: a new API key, shown once
//	GET  /keys                       the caller's keys (admin: ?user=<id>, or all)
//	DELETE /keys/{id}                revoke one of the caller's keys (admin: anyone's)
type Handler struct {
	// AllowUnauthenticated serves callers no auth step has recognised,
	// and lets them use the admin override. Without it such callers get 401.
	AllowUnauthenticated bool `json:"allow_unauthenticated,omitempty"`
	// MaxKeys is how many live API keys a user may hold (default 10);
	// admins creating keys are not limited.
	MaxKeys int `json:"max_keys,omitempty"`

	app *gateway.App
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.llm_api", New: func() caddy.Module { return new(Handler) }}
}

// Provision finds the llm app.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := gateway.FromContext(ctx)
	h.app = app
	return err
}

// ServeHTTP answers the API endpoints and passes anything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	path := strings.TrimSuffix(r.URL.Path, "/")
	var serve func(http.ResponseWriter, *http.Request, string)
	var method, arg string
	switch {
	case path == "/models":
		serve, method = h.models, http.MethodGet
	case path == "/models/select":
		serve, method = h.selectModel, http.MethodPost
	case strings.HasPrefix(path, "/models/"):
		serve, method, arg = h.model, http.MethodGet, strings.TrimPrefix(path, "/models/")
	case path == "/providers":
		serve, method = h.providers, http.MethodGet
	case path == "/providers/health":
		serve, method = h.health, http.MethodGet
	case strings.HasPrefix(path, "/providers/") && strings.HasSuffix(path, "/override"):
		serve, method = h.override, http.MethodPost
		arg = strings.TrimSuffix(strings.TrimPrefix(path, "/providers/"), "/override")
	case path == "/credits":
		serve, method = h.credits, http.MethodGet
	case path == "/credits/add":
		serve, method = h.addCredits, http.MethodPost
	case path == "/usage":
		serve, method = h.usage, http.MethodGet
	case path == "/usage/summary":
		serve, method = h.usageSummary, http.MethodGet
	case path == "/byok/keys":
		serve, method = h.byokCollection, r.Method
		if method != http.MethodPost {
			method = http.MethodGet
		}
	case strings.HasPrefix(path, "/byok/keys/"):
		serve, method, arg = h.byokItem, r.Method, strings.TrimPrefix(path, "/byok/keys/")
		if method != http.MethodPatch {
			method = http.MethodDelete
		}
	case path == "/keys":
		serve, method = h.keysCollection, r.Method
		if method != http.MethodPost {
			method = http.MethodGet
		}
	case strings.HasPrefix(path, "/keys/"):
		serve, method, arg = h.deleteKey, http.MethodDelete, strings.TrimPrefix(path, "/keys/")
	default:
		return next.ServeHTTP(w, r)
	}
	x, r := exchange.Attach(r)
	if x.Identity == nil && !h.AllowUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="llmgate"`)
		llmerr.Write(w, llmerr.New(http.StatusUnauthorized, "missing_credentials", "this route requires authentication"))
		return nil
	}
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		w.Header().Set("Allow", method)
		llmerr.Write(w, llmerr.New(http.StatusMethodNotAllowed, "method_not_allowed", path+" accepts "+method+" only"))
		return nil
	}
	serve(w, r, arg)
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (h *Handler) models(w http.ResponseWriter, _ *http.Request, _ string) {
	served := h.app.Catalog().Served()
	data := make([]gateway.ModelInfo, len(served))
	for i, m := range served {
		data[i] = gateway.ModelInfoOf(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (h *Handler) model(w http.ResponseWriter, _ *http.Request, id string) {
	m, ok := h.app.Catalog().Lookup(id)
	if !ok || len(m.Serve) == 0 {
		llmerr.Write(w, llmerr.New(http.StatusNotFound, "model_not_found", "the model `"+id+"` does not exist or no configured provider serves it"))
		return
	}
	writeJSON(w, http.StatusOK, gateway.ModelInfoOf(m))
}

func (h *Handler) providers(w http.ResponseWriter, _ *http.Request, _ string) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": h.app.ProviderInfos()})
}

func (h *Handler) health(w http.ResponseWriter, _ *http.Request, _ string) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": h.app.HealthSnapshots()})
}

func (h *Handler) override(w http.ResponseWriter, r *http.Request, provider string) {
	if !requireAdmin(w, r, "overriding provider state") {
		return
	}
	var req struct {
		State      string `json:"state"`
		Deployment string `json:"deployment"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", `body must be {"state":"up|down|auto","deployment":"<optional id>"}`))
		return
	}
	o, ok := health.ParseOverride(req.State)
	if !ok {
		llmerr.Write(w, llmerr.New(http.StatusBadRequest, "invalid_request_error", "state must be up, down or auto").WithParam("state"))
		return
	}
	if _, ok := h.app.Provider(provider); !ok {
		llmerr.Write(w, llmerr.New(http.StatusNotFound, "provider_not_found", "no active provider "+provider))
		return
	}
	n := h.app.SetOverride(provider, req.Deployment, o)
	if n == 0 {
		llmerr.Write(w, llmerr.New(http.StatusNotFound, "deployment_not_found", "provider "+provider+" has no deployment "+req.Deployment).WithParam("deployment"))
		return
	}
	h.app.Logger().Info("provider override set", zap.String("provider", provider), zap.String("deployment", req.Deployment), zap.String("state", o.String()))
	writeJSON(w, http.StatusOK, map[string]any{"provider": provider, "deployment": req.Deployment, "state": o.String(), "deployments_changed": n})
}

// requireAdmin refuses with 403 unless the caller has the admin role. An
// unauthenticated caller (allow_unauthenticated) is never an admin.
func requireAdmin(w http.ResponseWriter, r *http.Request, what string) bool {
	if auth.HasRole(exchange.From(r.Context()).Identity, "admin") {
		return true
	}
	llmerr.Write(w, llmerr.New(http.StatusForbidden, "admin_required", what+" needs the admin role"))
	return false
}

// parseCaddyfile sets up the handler from Caddyfile tokens:
//
//	llm_api {
//	    allow_unauthenticated
//	    max_keys <n>
//	}
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
	for d.NextBlock(0) {
		switch d.Val() {
		case "allow_unauthenticated":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.AllowUnauthenticated = true
		case "max_keys":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return d.Errf("max_keys %q must be a positive integer", s)
			}
			h.MaxKeys = n
		default:
			return d.Errf("unknown llm_api option %q", d.Val())
		}
	}
	return nil
}

var (
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
