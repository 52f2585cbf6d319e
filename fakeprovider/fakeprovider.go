// Package fakeprovider is a real OpenAI-compatible HTTP server for tests,
// benchmarks and offline demos: chat completions (plain and streamed, with
// the usage chunk when asked), completions, embeddings and models, with
// configurable latency, time to first token, token rate, usage figures and
// faults. It records what it received. It answers under /v1/... and /... .
package fakeprovider

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// Fault makes the server misbehave.
type Fault string

const (
	NoFault Fault = ""
	// Fail500 answers 500 with an OpenAI-shaped error.
	Fail500 Fault = "500"
	// Fail429 answers 429 with Retry-After (Config.RetryAfter seconds).
	Fail429 Fault = "429"
	// Hang accepts the request and never answers until the client gives up.
	Hang Fault = "hang"
	// ResetMidStream sends FaultAfter chunks of a stream, then drops the connection.
	ResetMidStream Fault = "reset"
	// Fail401 refuses the key.
	Fail401 Fault = "401"
)

// Config shapes the answers. The zero value answers at once with 8 tokens.
type Config struct {
	Latency          time.Duration // before response headers
	TTFT             time.Duration // after headers, before the first streamed token
	TokensPerSecond  int           // streaming pace; 0 = as fast as possible
	CompletionTokens int           // tokens generated (default 8)
	PromptTokens     int           // reported prompt tokens (default: from the body size)
	OmitUsage        bool          // leave usage out of responses
	Fault            Fault
	FaultAfter       int // chunks sent before ResetMidStream drops the connection
	RetryAfter       int // seconds, with Fail429
	// Key, when set, is the only Authorization bearer accepted (401 otherwise).
	Key string
	// NoRecord keeps no record of requests (for load tests).
	NoRecord bool
	// Reply, when set, is the whole content of non-streamed answers.
	Reply string
	// AnswerModel, when set, is the model answers name (a router's choice).
	AnswerModel string
	// CacheRead and CacheWrite are reported by the Messages API (/messages).
	CacheRead, CacheWrite int
	// HugeEvent, when positive, makes the first streamed event carry a
	// token of that many bytes (an upstream sending absurd SSE lines).
	HugeEvent int
}

// Received is one request as the server saw it.
type Received struct {
	Method, Path string
	Header       http.Header
	Body         []byte
	Model        string
	// Canceled is set when the client went away before the answer was complete.
	Canceled bool
	// Completed is set when the whole answer was written.
	Completed bool
}

// Server is a fake provider.
type Server struct {
	mu       sync.Mutex
	cfg      Config
	received []*Received
}

// New returns a server with cfg.
func New(cfg Config) *Server { return &Server{cfg: cfg} }

// Set replaces the configuration.
func (s *Server) Set(cfg Config) {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
}

// Config returns the current configuration.
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Received returns copies of the requests received so far.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Received, len(s.received))
	for i, r := range s.received {
		out[i] = *r
	}
	return out
}

// Count returns how many requests arrived.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.received)
}

// Reset forgets the received requests.
func (s *Server) Reset() {
	s.mu.Lock()
	s.received = nil
	s.mu.Unlock()
}

func (s *Server) record(r *http.Request, body []byte) *Received {
	rec := &Received{Method: r.Method, Path: r.URL.Path}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.NoRecord {
		return rec
	}
	rec.Header, rec.Body, rec.Model = r.Header.Clone(), body, gjson.GetBytes(body, "model").Str
	s.received = append(s.received, rec)
	return rec
}

func (s *Server) mark(rec *Received, canceled, completed bool) {
	s.mu.Lock()
	rec.Canceled, rec.Completed = canceled, completed
	s.mu.Unlock()
}

func writeErr(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"message":%q,"type":%q,"code":null}}`, msg, typ)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/v1")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	rec := s.record(r, body)
	cfg := s.Config()
	if path == "/messages" {
		s.messages(w, r, rec, cfg, body)
		return
	}
	if cfg.Key != "" && r.Header.Get("Authorization") != "Bearer "+cfg.Key {
		writeErr(w, 401, "invalid_request_error", "Incorrect API key provided")
		return
	}
	if path == "/models" && r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"fake-model","object":"model","created":0,"owned_by":"fake"}]}`)
		s.mark(rec, false, true)
		return
	}
	if r.Method != http.MethodPost {
		writeErr(w, 405, "invalid_request_error", "method not allowed")
		return
	}
	if !sleep(r, cfg.Latency) {
		s.mark(rec, true, false)
		return
	}
	switch cfg.Fault {
	case Fail500:
		writeErr(w, 500, "server_error", "The server had an error while processing your request.")
		return
	case Fail401:
		writeErr(w, 401, "invalid_request_error", "Incorrect API key provided: sk-fake********************1234")
		return
	case Fail429:
		w.Header().Set("Retry-After", strconv.Itoa(cfg.RetryAfter))
		writeErr(w, 429, "rate_limit_error", "Rate limit reached")
		return
	case Hang:
		<-r.Context().Done()
		s.mark(rec, true, false)
		return
	}
	model := gjson.GetBytes(body, "model").Str
	if cfg.AnswerModel != "" {
		model = cfg.AnswerModel
	}
	prompt := cfg.PromptTokens
	if prompt == 0 {
		prompt = max(1, len(body)/4)
	}
	n := cfg.CompletionTokens
	if n == 0 {
		n = 8
	}
	switch path {
	case "/chat/completions", "/completions":
		chat := path == "/chat/completions"
		if gjson.GetBytes(body, "stream").Bool() {
			ok := s.stream(w, r, cfg, chat, model, prompt, n, gjson.GetBytes(body, "stream_options.include_usage").Bool())
			s.mark(rec, !ok, ok)
			return
		}
		text := tokens(0, n)
		if cfg.Reply != "" {
			text = cfg.Reply
		}
		var choice any = map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text}, "finish_reason": "stop"}
		obj := "chat.completion"
		if !chat {
			choice = map[string]any{"index": 0, "text": text, "finish_reason": "stop"}
			obj = "text_completion"
		}
		resp := map[string]any{"id": "fake-1", "object": obj, "created": 0, "model": model, "choices": []any{choice}}
		if !cfg.OmitUsage {
			resp["usage"] = usage(prompt, n)
		}
		writeJSON(w, resp)
	case "/embeddings":
		inputs := 1
		if in := gjson.GetBytes(body, "input"); in.IsArray() {
			inputs = len(in.Array())
		}
		data := make([]any, inputs)
		for i := range data {
			data[i] = map[string]any{"object": "embedding", "index": i, "embedding": []float64{0.1, 0.2, 0.3}}
		}
		resp := map[string]any{"object": "list", "model": model, "data": data}
		if !cfg.OmitUsage {
			resp["usage"] = map[string]int{"prompt_tokens": prompt, "total_tokens": prompt}
		}
		writeJSON(w, resp)
	default:
		writeErr(w, 404, "invalid_request_error", "unknown path "+r.URL.Path)
		return
	}
	s.mark(rec, false, true)
}

func usage(prompt, completion int) map[string]int {
	return map[string]int{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Token i of every answer is "t<i> ", so a client can check order and count.
func tokens(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "t%d ", i)
	}
	return b.String()
}

func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// stream writes an SSE answer; it reports whether it completed.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, cfg Config, chat bool, model string, prompt, n int, includeUsage bool) bool {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	if !sleep(r, cfg.TTFT) {
		return false
	}
	var gap time.Duration
	if cfg.TokensPerSecond > 0 {
		gap = time.Second / time.Duration(cfg.TokensPerSecond)
	}
	send := func(v any) bool {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	obj := "chat.completion.chunk"
	if !chat {
		obj = "text_completion"
	}
	chunk := func(delta string, finish any) map[string]any {
		var choice map[string]any
		if chat {
			d := map[string]any{}
			if delta != "" {
				d["content"] = delta
			}
			choice = map[string]any{"index": 0, "delta": d, "finish_reason": finish}
		} else {
			choice = map[string]any{"index": 0, "text": delta, "finish_reason": finish}
		}
		return map[string]any{"id": "fake-1", "object": obj, "created": 0, "model": model, "choices": []any{choice}}
	}
	for i := 0; i < n; i++ {
		if cfg.Fault == ResetMidStream && i == cfg.FaultAfter {
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					if tc, ok := conn.(*net.TCPConn); ok {
						_ = tc.SetLinger(0)
					}
					_ = conn.Close()
				}
			}
			return false
		}
		if i > 0 && !sleep(r, gap) {
			return false
		}
		tok := tokens(i, i+1)
		if i == 0 && cfg.HugeEvent > 0 {
			tok = strings.Repeat("x", cfg.HugeEvent)
		}
		if !send(chunk(tok, nil)) {
			return false
		}
	}
	if !send(chunk("", "stop")) {
		return false
	}
	if includeUsage && !cfg.OmitUsage {
		if !send(map[string]any{"id": "fake-1", "object": obj, "created": 0, "model": model, "choices": []any{}, "usage": usage(prompt, n)}) {
			return false
		}
	}
	_, err := io.WriteString(w, "data: [DONE]\n\n")
	return err == nil && rc.Flush() == nil
}
