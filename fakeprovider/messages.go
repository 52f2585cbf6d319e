package fakeprovider

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/tidwall/gjson"
)

func anthropicErr(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":%q}}`, typ, msg)
}

// messages answers Anthropic's Messages API: plain and streamed, with usage
// (cache figures included) and the same faults as the OpenAI endpoints.
func (s *Server) messages(w http.ResponseWriter, r *http.Request, rec *Received, cfg Config, body []byte) {
	if cfg.Key != "" && r.Header.Get("X-Api-Key") != cfg.Key {
		anthropicErr(w, 401, "authentication_error", "invalid x-api-key")
		return
	}
	if r.Header.Get("Anthropic-Version") == "" {
		anthropicErr(w, 400, "invalid_request_error", "anthropic-version header is required")
		return
	}
	req := gjson.ParseBytes(body)
	if !req.Get("max_tokens").Exists() || !req.Get("messages").IsArray() {
		anthropicErr(w, 400, "invalid_request_error", "max_tokens and messages are required")
		return
	}
	if !sleep(r, cfg.Latency) {
		s.mark(rec, true, false)
		return
	}
	switch cfg.Fault {
	case Fail500:
		anthropicErr(w, 500, "api_error", "Internal server error")
		return
	case Fail429:
		w.Header().Set("Retry-After", fmt.Sprint(cfg.RetryAfter))
		anthropicErr(w, 429, "rate_limit_error", "rate limited")
		return
	case Hang:
		<-r.Context().Done()
		s.mark(rec, true, false)
		return
	}
	model := req.Get("model").Str
	n := cfg.CompletionTokens
	if n == 0 {
		n = 8
	}
	prompt := cfg.PromptTokens
	if prompt == 0 {
		prompt = max(1, len(body)/4)
	}
	usage := map[string]int{"input_tokens": prompt, "output_tokens": n, "cache_read_input_tokens": cfg.CacheRead, "cache_creation_input_tokens": cfg.CacheWrite}
	if !req.Get("stream").Bool() {
		writeJSON(w, map[string]any{"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
			"content": []any{map[string]string{"type": "text", "text": tokens(0, n)}}, "stop_reason": "end_turn", "usage": usage})
		s.mark(rec, false, true)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(200)
	rc := http.NewResponseController(w)
	send := func(name string, v any) bool {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	start := map[string]int{"input_tokens": prompt, "output_tokens": 1, "cache_read_input_tokens": cfg.CacheRead, "cache_creation_input_tokens": cfg.CacheWrite}
	ok := send("message_start", map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": []any{}, "usage": start}}) &&
		send("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]string{"type": "text", "text": ""}})
	if ok && !sleep(r, cfg.TTFT) {
		ok = false
	}
	var gap time.Duration
	if cfg.TokensPerSecond > 0 {
		gap = time.Second / time.Duration(cfg.TokensPerSecond)
	}
	for i := 0; ok && i < n; i++ {
		if i > 0 && !sleep(r, gap) {
			ok = false
			break
		}
		ok = send("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]string{"type": "text_delta", "text": tokens(i, i+1)}})
	}
	ok = ok && send("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0}) &&
		send("message_delta", map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": "end_turn"}, "usage": map[string]int{"output_tokens": n}}) &&
		send("message_stop", map[string]any{"type": "message_stop"})
	s.mark(rec, !ok, ok)
}
