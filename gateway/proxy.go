package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/anthropic"
	"github.com/llmgate/llmgate/exchange"
	"github.com/llmgate/llmgate/health"
	"github.com/llmgate/llmgate/llmerr"
	"github.com/llmgate/llmgate/reqview"
	"github.com/llmgate/llmgate/sse"
)

// MaxEventBytes bounds one upstream SSE event; a larger one ends the stream
// with an error event rather than growing memory without limit.
const MaxEventBytes = 4 << 20

// forwardHeaders are the client headers passed to providers. Everything else
// (the client's own credentials, cookies, org and project ids) stays here.
var forwardHeaders = []string{"Accept", "User-Agent", "Openai-Beta", "Idempotency-Key", "X-Request-Id"}

// dropResponseHeaders are upstream response headers the client does not get.
var dropResponseHeaders = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true, "Proxy-Connection": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Set-Cookie": true, "Openai-Organization": true, "Openai-Project": true, "Content-Length": true,
}

type failKind uint8

const (
	failConnect failKind = iota + 1
	failTimeout
	failStatus
	failAuth
)

type failure struct {
	kind       failKind
	provider   string
	status     int
	retryAfter time.Duration
	userKey    bool // the caller's own key was refused
}

func (f failure) String() string {
	switch f.kind {
	case failConnect:
		return f.provider + ": connection failed"
	case failTimeout:
		return f.provider + ": timed out"
	case failAuth:
		if f.userKey {
			return f.provider + ": refused your own key"
		}
		return f.provider + ": rejected the gateway's credentials"
	}
	return f.provider + ": HTTP " + strconv.Itoa(f.status)
}

func (f failure) reason() string {
	switch f.kind {
	case failConnect:
		return "connect"
	case failTimeout:
		return "timeout"
	case failAuth:
		return "auth"
	}
	if f.status == http.StatusTooManyRequests {
		return "429"
	}
	return "5xx"
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Proxy sends the exchange's request to its candidates in order, failing over
// on connect errors, timeouts, 429, 5xx and credential refusals until the
// first byte reaches the client, never after. It writes the response, or an
// OpenAI-shaped error when nothing could serve.
func (a *App) Proxy(w http.ResponseWriter, r *http.Request, x *exchange.Exchange) error {
	if len(x.Route) == 0 {
		return llmerr.New(http.StatusInternalServerError, "misconfigured", "llm_upstream needs llm_router before it in the route")
	}
	var fails []failure
	var tried []*health.Deployment
	for {
		now := time.Now()
		c, d := a.next(x.Route, tried, now, func(c exchange.Candidate) bool {
			if p := a.providers[c.Provider]; p != nil && p.Config.API == "anthropic" && x.View.Endpoint != reqview.Chat && x.View.Endpoint != reqview.Messages {
				return true // the Messages API has no completions or embeddings
			}
			_, ok := a.keyFor(x, c)
			return !ok
		})
		if d == nil {
			break
		}
		if !d.Health.Acquire(now) {
			tried = append(tried, d.Health)
			continue
		}
		done, f := a.attempt(w, r, x, c, d)
		if done {
			return nil
		}
		if !f.userKey {
			// A refused user key is not the deployment's fault: it may be
			// tried again with the platform key, where the policy allows.
			tried = append(tried, d.Health)
		}
		fails = append(fails, f)
		a.metrics.failovers.WithLabelValues(f.provider, f.reason()).Inc()
		if r.Context().Err() != nil {
			return nil // the client went away; nobody to answer
		}
	}
	return a.allFailed(x, fails)
}

// next picks the next deployment to try: the best-priority group of
// candidates with an untried, available deployment, and within it the pick
// of two choices.
func (a *App) next(route []exchange.Candidate, tried []*health.Deployment, now time.Time, unusable func(exchange.Candidate) bool) (exchange.Candidate, *Deployment) {
	isTried := func(h *health.Deployment) bool {
		for _, t := range tried {
			if t == h {
				return true
			}
		}
		return false
	}
	for i := 0; i < len(route); {
		j := i
		for j < len(route) && route[j].Priority == route[i].Priority {
			j++
		}
		var group []*health.Deployment
		for _, c := range route[i:j] {
			if unusable(c) {
				continue
			}
			if p, ok := a.providers[c.Provider]; ok {
				for _, d := range p.deployments {
					group = append(group, d.Health)
				}
			}
		}
		if h := health.Pick(group, now, isTried); h != nil {
			for _, c := range route[i:j] {
				p := a.providers[c.Provider]
				if p == nil || c.Provider != h.Provider || unusable(c) {
					continue
				}
				for _, d := range p.deployments {
					if d.Health == h {
						return c, d
					}
				}
			}
		}
		i = j
	}
	return exchange.Candidate{}, nil
}

func (a *App) allFailed(x *exchange.Exchange, fails []failure) error {
	now := time.Now()
	retry := time.Duration(0)
	for _, c := range x.Route {
		if p, ok := a.providers[c.Provider]; ok {
			for _, d := range p.deployments {
				if in := d.Health.RetryIn(now); in > 0 && (retry == 0 || in < retry) {
					retry = in
				}
			}
		}
	}
	if retry < time.Second {
		retry = time.Second
	}
	model := x.View.Model
	var e *llmerr.Error
	if len(fails) == 0 {
		e = llmerr.New(http.StatusServiceUnavailable, "upstream_unavailable",
			fmt.Sprintf("no healthy provider can serve model %s right now; retry later", model))
	} else {
		parts := make([]string, len(fails))
		allTimeout := true
		for i, f := range fails {
			parts[i] = f.String()
			allTimeout = allTimeout && f.kind == failTimeout
		}
		status, code := http.StatusServiceUnavailable, "upstream_unavailable"
		if allTimeout {
			status, code = http.StatusGatewayTimeout, "upstream_timeout"
		}
		e = llmerr.New(status, code, fmt.Sprintf("every provider for model %s failed: %s", model, strings.Join(parts, "; ")))
	}
	e.RetryAfter = retry
	x.Status = e.Status
	a.metrics.requests.WithLabelValues("", x.Route[0].Model, strconv.Itoa(e.Status)).Inc()
	return e
}

// attempt makes one upstream try. done is true when the response was
// committed to the client (or the client is gone); otherwise f says why it failed.
func (a *App) attempt(w http.ResponseWriter, r *http.Request, x *exchange.Exchange, c exchange.Candidate, d *Deployment) (done bool, f failure) {
	p := a.providers[c.Provider]
	f.provider = c.Provider
	body := x.Body
	if x.View.Model != c.Upstream {
		var err error
		if body, err = sjson.SetBytes(x.Body, "model", c.Upstream); err != nil {
			d.Health.Release(time.Now(), health.Outcome{OK: true})
			f.kind = failStatus
			return false, f
		}
	}
	anth := p.Config.API == "anthropic"
	msgsIn := x.View.Endpoint == reqview.Messages
	path := x.View.Endpoint.Path()
	switch {
	case msgsIn && !anth:
		// Anthropic in, OpenAI-style provider out.
		tb, err := anthropic.ToOpenAIRequest(body, c.Upstream)
		if err != nil {
			d.Health.Release(time.Now(), health.Outcome{OK: true})
			e := llmerr.New(http.StatusBadRequest, "invalid_request_error", "the request could not be translated")
			x.Status = e.Status
			llmerr.Write(w, e)
			return true, f
		}
		body, path = tb, "/chat/completions"
	case anth && !msgsIn:
		maxOut := int64(DefaultMaxOutput)
		if m, ok := a.catalog.Lookup(c.Model); ok && m.MaxOutputTokens > 0 {
			maxOut = m.MaxOutputTokens
		}
		tb, e := anthropic.FromOpenAI(body, c.Upstream, maxOut)
		if e != nil {
			// The request itself cannot be expressed: the client's to fix.
			d.Health.Release(time.Now(), health.Outcome{OK: true})
			x.Status = e.Status
			llmerr.Write(w, e)
			return true, f
		}
		body, path = tb, "/messages"
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var timedOut atomic.Bool
	watchdog := time.AfterFunc(p.firstByte, func() { timedOut.Store(true); cancel() })
	defer watchdog.Stop()

	out, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+path, bytes.NewReader(body))
	if err != nil {
		d.Health.Release(time.Now(), health.Outcome{Err: "bad request URL"})
		f.kind = failConnect
		return false, f
	}
	for _, h := range forwardHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			out.Header[h] = v
		}
	}
	out.Header.Set("Content-Type", "application/json")
	// The caller's own key for this provider, or the platform's; a key is
	// never sent to any provider but its own.
	key, _ := a.keyFor(x, c)
	uk := x.BYOK[c.Provider]
	if uk != nil && (uk.Invalid || key != uk.Key) {
		uk = nil
	}
	switch {
	case anth:
		version := anthropic.Version
		if msgsIn && r.Header.Get("Anthropic-Version") != "" {
			version = r.Header.Get("Anthropic-Version")
			if b := r.Header.Get("Anthropic-Beta"); b != "" {
				out.Header.Set("anthropic-beta", b)
			}
		}
		out.Header.Set("anthropic-version", version)
		if key != "" {
			out.Header.Set("x-api-key", key)
		}
	case key != "":
		out.Header.Set("Authorization", "Bearer "+key)
	}
	start := time.Now()
	att := exchange.Attempt{Provider: c.Provider, Deployment: d.Health.ID}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		if r.Context().Err() != nil {
			d.Health.Release(time.Now(), health.Outcome{OK: true}) // the client left; not the provider's fault
			att.Err = "client canceled"
			x.Attempts = append(x.Attempts, att)
			x.Status = 499
			return true, f
		}
		f.kind = failConnect
		if timedOut.Load() || isTimeout(err) {
			f.kind = failTimeout
		}
		att.Err, att.Latency = f.String(), time.Since(start)
		x.Attempts = append(x.Attempts, att)
		d.Health.Release(time.Now(), health.Outcome{Latency: att.Latency, Err: describeErr(err)})
		a.logAttempt(c, d, att)
		return false, f
	}
	ttfb := time.Since(start)
	att.Status = resp.StatusCode
	if st := resp.StatusCode; uk != nil && (st == http.StatusUnauthorized || st == http.StatusForbidden) {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		d.Health.Release(time.Now(), health.Outcome{OK: true, Latency: ttfb})
		owner := ""
		if x.Identity != nil {
			owner = x.Identity.User
		}
		a.MarkKeyInvalid(owner, uk)
		f.kind, f.status, f.userKey = failAuth, st, true
		att.Err, att.Latency = f.String(), ttfb
		x.Attempts = append(x.Attempts, att)
		return false, f
	}
	if st := resp.StatusCode; st == http.StatusTooManyRequests || st >= 500 || st == http.StatusUnauthorized || st == http.StatusForbidden {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		f.kind, f.status = failStatus, st
		if st == http.StatusUnauthorized || st == http.StatusForbidden {
			f.kind = failAuth
		}
		o := health.Outcome{Latency: ttfb, Err: "HTTP " + strconv.Itoa(st)}
		if st == http.StatusTooManyRequests {
			o.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
			if o.RetryAfter <= 0 {
				o.RetryAfter = time.Second
			}
			f.retryAfter = o.RetryAfter
		}
		att.Err, att.Latency = f.String(), ttfb
		x.Attempts = append(x.Attempts, att)
		d.Health.Release(time.Now(), o)
		a.logAttempt(c, d, att)
		return false, f
	}
	// Committed: from here on the client gets this response, whatever happens.
	watchdog.Reset(p.idle)
	defer resp.Body.Close()
	hdr := w.Header()
	for k, vs := range resp.Header {
		if !dropResponseHeaders[k] {
			hdr[k] = vs
		}
	}
	if resp.ContentLength >= 0 && !resp.Uncompressed {
		hdr.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	hdr.Set("X-LLM-Provider", c.Provider)
	if c.Model != "" {
		hdr.Set("X-LLM-Model", c.Model)
	} else if m := resp.Header.Get("X-LLM-Model"); m == "" {
		hdr.Set("X-LLM-Model", x.View.Model) // a delegated choice: the router's answer names it
	}
	if x.RouteKind != "" {
		hdr.Set("X-LLM-Route", x.RouteKind)
	}
	x.Provider, x.Deployment, x.ServedModel, x.Status = c.Provider, d.Health.ID, c.Upstream, resp.StatusCode
	x.ServedBYOK = uk != nil
	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	var upErr, clientErr error
	switch {
	case anth && !msgsIn && stream:
		w.WriteHeader(resp.StatusCode)
		tr := anthropic.NewStream(gjson.GetBytes(x.Body, "stream_options.include_usage").Bool())
		ttfb, upErr, clientErr = a.copyStreamWith(w, resp.Body, watchdog, p.idle, start, tr.Event)
	case anth && !msgsIn:
		ttfb, upErr, clientErr = translateBody(w, resp, watchdog, p.idle, anthropic.ToOpenAI)
	case msgsIn && !anth && stream:
		w.WriteHeader(resp.StatusCode)
		ttfb, upErr, clientErr = a.copyStreamWith(w, resp.Body, watchdog, p.idle, start, anthropic.NewReverseStream().Event)
	case msgsIn && !anth && resp.StatusCode/100 == 2:
		ttfb, upErr, clientErr = translateBody(w, resp, watchdog, p.idle, anthropic.FromOpenAIResponse)
	case stream:
		w.WriteHeader(resp.StatusCode)
		ttfb, upErr, clientErr = a.copyStream(w, resp.Body, watchdog, p.idle, start)
	default:
		w.WriteHeader(resp.StatusCode)
		upErr, clientErr = copyBody(w, resp.Body, watchdog, p.idle)
	}
	att.Latency, att.TTFB = time.Since(start), ttfb
	x.UpstreamDur, x.TTFB = att.Latency, ttfb
	o := health.Outcome{OK: true, Latency: att.Latency, TTFB: ttfb}
	if upErr != nil && clientErr == nil && r.Context().Err() == nil {
		o = health.Outcome{Latency: att.Latency, Err: "stream broken: " + describeErr(upErr)}
		if timedOut.Load() {
			o.Err = "stream idle timeout"
		}
		att.Err = o.Err
		if stream {
			writeStreamError(w, "the provider's stream broke off: "+o.Err)
		}
	}
	if clientErr != nil || r.Context().Err() != nil {
		x.Status = 499
	}
	x.Attempts = append(x.Attempts, att)
	d.Health.Release(time.Now(), o)
	a.metrics.requests.WithLabelValues(c.Provider, c.Model, strconv.Itoa(resp.StatusCode)).Inc()
	a.metrics.latency.WithLabelValues(c.Provider).Observe(att.Latency.Seconds())
	a.metrics.ttfb.WithLabelValues(c.Provider).Observe(ttfb.Seconds())
	return true, f
}

// copyStream passes an event stream on event by event, flushing each.
func (a *App) copyStream(w http.ResponseWriter, body io.Reader, watchdog *time.Timer, idle time.Duration, start time.Time) (ttfb time.Duration, upErr, clientErr error) {
	return a.copyStreamWith(w, body, watchdog, idle, start, nil)
}

// copyStreamWith passes an event stream on event by event, flushing each,
// through translate when it is set (which may turn one event into several
// or none).
func (a *App) copyStreamWith(w http.ResponseWriter, body io.Reader, watchdog *time.Timer, idle time.Duration, start time.Time,
	translate func(name string, data []byte) [][]byte) (ttfb time.Duration, upErr, clientErr error) {
	rc := http.NewResponseController(w)
	rd := sse.NewReader(body, MaxEventBytes)
	for {
		ev, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return ttfb, nil, nil
			}
			return ttfb, err, nil
		}
		watchdog.Reset(idle)
		if ttfb == 0 {
			ttfb = time.Since(start)
		}
		out := [][]byte{ev.Raw}
		if translate != nil {
			out = translate(string(ev.Name), ev.Data)
		}
		for _, b := range out {
			if _, err := w.Write(b); err != nil {
				return ttfb, nil, err
			}
		}
		if len(out) > 0 {
			if err := rc.Flush(); err != nil {
				return ttfb, nil, err
			}
		}
	}
}

// translateBody reads a whole answer and writes it translated by ok (a
// Messages API error is written in OpenAI's error shape).
func translateBody(w http.ResponseWriter, resp *http.Response, watchdog *time.Timer, idle time.Duration, ok func([]byte) ([]byte, error)) (time.Duration, error, error) {
	watchdog.Reset(idle)
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return 0, err, nil
	}
	var out []byte
	if resp.StatusCode/100 == 2 {
		out, err = ok(b)
	} else {
		out, err = anthropic.ErrorToOpenAI(b, resp.StatusCode)
	}
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return 0, err, nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(resp.StatusCode)
	_, werr := w.Write(out)
	return 0, nil, werr
}

// copyBody copies a plain response, resetting the idle watchdog on each read.
func copyBody(w io.Writer, body io.Reader, watchdog *time.Timer, idle time.Duration) (upErr, clientErr error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := body.Read(buf)
		if n > 0 {
			watchdog.Reset(idle)
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, nil
			}
			return err, nil
		}
	}
}

func writeStreamError(w http.ResponseWriter, msg string) {
	b, _ := jsonMarshal(map[string]any{"error": map[string]string{"message": msg, "type": "api_error", "code": "upstream_stream_error"}})
	_, _ = w.Write([]byte("data: "))
	_, _ = w.Write(b)
	_, _ = w.Write([]byte("\n\n"))
	_ = http.NewResponseController(w).Flush()
}

func (a *App) logAttempt(c exchange.Candidate, d *Deployment, att exchange.Attempt) {
	if ce := a.logger.Check(zap.WarnLevel, "upstream attempt failed"); ce != nil {
		ce.Write(zap.String("provider", c.Provider), zap.String("deployment", d.Health.ID),
			zap.String("model", c.Upstream), zap.Int("status", att.Status), zap.String("error", att.Err),
			zap.Duration("latency", att.Latency))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// describeErr classifies a transport error without repeating its text, which
// can carry URLs.
func describeErr(err error) string {
	var de reverseproxy.DialError
	switch {
	case errors.As(err, &de):
		return "connect failed"
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "connection closed early"
	case errors.Is(err, sse.ErrEventTooLarge):
		return "event too large"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op + " failed"
	}
	return "transport error"
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return min(time.Duration(s)*time.Second, time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), time.Hour)
	}
	return 0
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// keyFor is the key a candidate would be called with, and whether the
// candidate may be called at all: the caller's valid key for the provider
// when the policy allows one, else the platform key, unless the policy
// requires the caller's key or the provider serves only callers' keys.
func (a *App) keyFor(x *exchange.Exchange, c exchange.Candidate) (string, bool) {
	p := a.providers[c.Provider]
	if p == nil {
		return "", false
	}
	if x.BYOKPolicy != "never" && x.BYOKPolicy != "" {
		if k := x.BYOK[c.Provider]; k != nil && !k.Invalid {
			return k.Key, true
		}
	}
	if x.BYOKPolicy == "require" || p.Config.BYOKOnly {
		return "", false
	}
	return p.key, true
}
