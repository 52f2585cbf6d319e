// Package charge is the llm_credits handler. It sits after llm_router (it
// needs the route's candidates to bound the cost) and wraps everything after
// it: before, it checks the tier and rate limits and holds the worst-case
// cost; after, it settles the real cost from the usage the provider
// reported (the JSON body's usage, or the SSE usage chunk, asked for even
// when the client did not, and then kept from the client), or from what was
// streamed when none came. Failed requests release the hold.
package charge

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/tidwall/sjson"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/credits"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/gateway"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/reqview"
)

func init() {
	caddy.RegisterModule(&Handler{})
	httpcaddyfile.RegisterHandlerDirective("llm_credits", parseCaddyfile)
}

// MaxBuffered bounds a non-streamed response held to read its usage and
// set the cost headers; a larger one passes through and is billed from the
// hold's estimate of what it could cost.
const MaxBuffered = 32 << 20

// Handler is http.handlers.llm_credits.
type Handler struct {
	app    *gateway.App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.llm_credits", New: func() caddy.Module { return new(Handler) }}
}

// Provision finds the llm app.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := gateway.FromContext(ctx)
	h.app, h.logger = app, ctx.Logger()
	return err
}

// ServeHTTP holds, calls the rest of the chain through a metering writer,
// and settles.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	x := exchange.From(r.Context())
	if x == nil || len(x.Route) == 0 {
		llmerr.Write(w, llmerr.New(http.StatusInternalServerError, "misconfigured", "llm_credits needs llm_router before it in the route"))
		return nil
	}
	adm, e := h.app.Admit(r.Context(), x)
	if e != nil {
		if e.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="llmgate"`)
		}
		llmerr.Write(w, e)
		return nil
	}
	strip := false
	if x.View.Stream && !x.View.IncludeUsage && (x.View.Endpoint == reqview.Chat || x.View.Endpoint == reqview.Completions) {
		if b, err := sjson.SetBytes(x.Body, "stream_options.include_usage", true); err == nil {
			x.Body, strip = b, true
		}
	}
	// The stream's terminal event waits for the settlement: a client that
	// saw its stream complete has been billed.
	mw := &meterWriter{rw: w, meter: &credits.StreamMeter{StripUsage: strip, MaxChunks: adm.MaxChunks, HoldTerminal: true},
		anthropic: x.View.Endpoint == reqview.Messages}
	err := next.ServeHTTP(mw, r)

	// Settle even when the client is gone: the request's context may be canceled.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	served := mw.status >= 200 && mw.status < 300 && x.Provider != ""
	var u credits.Usage
	switch {
	case !served:
	case mw.mode == modeStream:
		_ = mw.meter.Flush(mw.emit)
		u = mw.meter.Usage(adm.EstIn)
	case mw.mode == modeBuffer:
		var ok bool
		if u, ok = credits.UsageFromJSON(mw.buf); !ok {
			u = credits.Usage{In: adm.EstIn, Out: int64(len(mw.buf)+3) / 4}
		}
	default: // too large to buffer: bill what the hold allowed for
		u = credits.Usage{In: adm.EstIn, Out: adm.MaxChunks}
	}
	ch, serr := h.app.Settle(ctx, adm, x, served, u)
	if serr != nil {
		h.logger.Error("settling a request failed; its hold will expire", zap.String("request_id", adm.HoldID), zap.String("error", serr.Error()))
	}
	if served {
		x.CostMicros, x.BalanceMicros = ch.CostMicros, ch.BalanceMicros
		x.TokensIn, x.TokensOut, x.UsageEstimated = u.In, u.Out, !u.Reported
	}
	cost, bal := strconv.FormatInt(ch.CostMicros, 10), strconv.FormatInt(ch.BalanceMicros, 10)
	switch mw.mode {
	case modeBuffer:
		hdr := w.Header()
		if served && serr == nil {
			hdr.Set("X-LLM-Cost-Micros", cost)
			if !ch.Spooled {
				hdr.Set("X-LLM-Balance-Micros", bal)
			}
		}
		hdr.Set("Content-Length", strconv.Itoa(len(mw.buf)))
		w.WriteHeader(mw.status)
		_, _ = w.Write(mw.buf)
	case modeStream:
		if served && serr == nil && mw.clientErr == nil {
			if ch.Spooled {
				bal = "pending"
			}
			// A comment line: every SSE client, OpenAI's or Anthropic's, skips it.
			_, _ = w.Write([]byte(": llm-cost " + cost + " micros; balance " + bal + " micros\n\n"))
			w.Header().Set(http.TrailerPrefix+"X-LLM-Cost-Micros", cost)
			w.Header().Set(http.TrailerPrefix+"X-LLM-Balance-Micros", bal)
		}
		if t := mw.meter.Terminal(); len(t) > 0 && mw.clientErr == nil {
			_, _ = w.Write(t)
		}
		_ = http.NewResponseController(w).Flush()
	}
	return err
}

type mode uint8

const (
	modeUnset mode = iota
	modeStream
	modeBuffer
	modePass
)

// meterWriter is the ResponseWriter the rest of the chain writes to.
type meterWriter struct {
	rw        http.ResponseWriter
	meter     *credits.StreamMeter
	status    int
	mode      mode
	buf       []byte
	clientErr error
	wroteHdr  bool
	anthropic bool // the client speaks the Messages API
}

func (m *meterWriter) Header() http.Header { return m.rw.Header() }

// Unwrap lets http.ResponseController reach the real writer.
func (m *meterWriter) Unwrap() http.ResponseWriter { return m.rw }

func (m *meterWriter) WriteHeader(status int) {
	if m.wroteHdr {
		return
	}
	m.wroteHdr = true
	m.status = status
	switch {
	case status >= 200 && status < 300 && strings.HasPrefix(m.rw.Header().Get("Content-Type"), "text/event-stream"):
		m.mode = modeStream
		m.rw.Header().Del("Content-Length")
		m.rw.WriteHeader(status)
	case status >= 200 && status < 300:
		m.mode = modeBuffer // headers go out after settlement, with the cost
	default:
		m.mode = modePass
		m.rw.WriteHeader(status)
	}
}

func (m *meterWriter) emit(b []byte) error {
	if _, err := m.rw.Write(b); err != nil {
		m.clientErr = err
		return err
	}
	return nil
}

func (m *meterWriter) Write(p []byte) (int, error) {
	if !m.wroteHdr {
		m.WriteHeader(http.StatusOK)
	}
	switch m.mode {
	case modeStream:
		if err := m.meter.Feed(p, m.emit); err != nil {
			if errors.Is(err, credits.ErrOverrun) {
				if m.anthropic {
					_ = m.emit([]byte(`event: error` + "\n" + `data: {"type":"error","error":{"type":"insufficient_quota","message":"the response reached the credit held for it and was ended"}}` + "\n\n"))
				} else {
					_ = m.emit([]byte(`data: {"error":{"message":"the response reached the credit held for it and was ended","type":"insufficient_quota","code":"insufficient_quota"}}` + "\n\n"))
				}
				_ = http.NewResponseController(m.rw).Flush()
			}
			return 0, err
		}
		return len(p), nil
	case modeBuffer:
		if len(m.buf)+len(p) > MaxBuffered {
			// Too large to hold: send what we have and pass the rest through.
			m.mode = modePass
			m.rw.WriteHeader(m.status)
			if _, err := m.rw.Write(m.buf); err != nil {
				return 0, err
			}
			m.buf = nil
			return m.rw.Write(p)
		}
		m.buf = append(m.buf, p...)
		return len(p), nil
	}
	return m.rw.Write(p)
}

// Flush passes flushes on for streams; a buffered body is sent at the end.
func (m *meterWriter) Flush() {
	if m.mode == modeStream || m.mode == modePass {
		_ = http.NewResponseController(m.rw).Flush()
	}
}

// parseCaddyfile reads `llm_credits`, which takes no options: tiers,
// prices and holds are configured in the llm global option.
func parseCaddyfile(hc httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h := new(Handler)
	return h, h.UnmarshalCaddyfile(hc.Dispenser)
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() || d.NextBlock(0) {
		return d.Err("llm_credits takes no options")
	}
	return nil
}

var (
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
	_ http.Flusher                = (*meterWriter)(nil)
)
