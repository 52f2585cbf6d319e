package api

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/llmgate/llmgate/llmerr"
)

func init() {
	caddy.RegisterModule(&ErrorHandler{})
	httpcaddyfile.RegisterHandlerDirective("llm_error", parseErrorCaddyfile)
}

// ErrorHandler is http.handlers.llm_error: inside handle_errors it renders
// the error Caddy is handling (a 404 from an unmatched path, a 413 from
// request_body, a panic) as OpenAI-shaped JSON. It does not repeat the
// internal error text, which can carry paths or addresses.
type ErrorHandler struct{}

// CaddyModule returns the Caddy module information.
func (*ErrorHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.llm_error", New: func() caddy.Module { return new(ErrorHandler) }}
}

// ServeHTTP writes the error.
func (*ErrorHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	status := http.StatusInternalServerError
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if v, ok := repl.Get("http.error.status_code"); ok {
			if s, ok := v.(int); ok && s >= 400 && s < 600 {
				status = s
			}
		}
	}
	code := map[int]string{
		http.StatusNotFound: "not_found", http.StatusRequestEntityTooLarge: "request_too_large",
		http.StatusMethodNotAllowed: "method_not_allowed", http.StatusUnauthorized: "missing_credentials",
		http.StatusForbidden: "forbidden", http.StatusTooManyRequests: "rate_limited",
	}[status]
	if code == "" {
		code = "error"
		if status >= 500 {
			code = "internal_error"
		}
	}
	llmerr.Write(w, llmerr.New(status, code, http.StatusText(status)))
	return nil
}

// parseErrorCaddyfile reads `llm_error`, which takes no arguments.
func parseErrorCaddyfile(hc httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h := new(ErrorHandler)
	return h, h.UnmarshalCaddyfile(hc.Dispenser)
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *ErrorHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("llm_error takes no arguments")
	}
	return nil
}

var (
	_ caddyhttp.MiddlewareHandler = (*ErrorHandler)(nil)
	_ caddyfile.Unmarshaler       = (*ErrorHandler)(nil)
)
