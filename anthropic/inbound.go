package anthropic

import (
	"encoding/json"
	"strings"

	"github.com/tidwall/gjson"
)

// ToOpenAIRequest turns a Messages API body into an OpenAI chat completions
// body for model (a request arriving at /messages for an OpenAI-style
// provider). Streams ask for the usage chunk, which becomes message_delta's usage.
func ToOpenAIRequest(body []byte, model string) ([]byte, error) {
	root := gjson.ParseBytes(body)
	out := map[string]any{"model": model, "max_tokens": root.Get("max_tokens").Int()}
	for _, f := range []string{"temperature", "top_p"} {
		if v := root.Get(f); v.Type == gjson.Number {
			out[f] = v.Float()
		}
	}
	if st := root.Get("stop_sequences"); st.IsArray() && len(st.Array()) > 0 {
		var seqs []string
		st.ForEach(func(_, v gjson.Result) bool { seqs = append(seqs, v.Str); return true })
		out["stop"] = seqs
	}
	if root.Get("stream").Bool() {
		out["stream"] = true
		out["stream_options"] = map[string]bool{"include_usage": true}
	}
	if u := root.Get("metadata.user_id").Str; u != "" {
		out["user"] = u
	}
	var msgs []map[string]any
	if sys := root.Get("system"); sys.Exists() {
		if t := textOf(sys); t != "" {
			msgs = append(msgs, map[string]any{"role": "system", "content": t})
		}
	}
	root.Get("messages").ForEach(func(_, m gjson.Result) bool {
		role, c := m.Get("role").Str, m.Get("content")
		if c.Type == gjson.String {
			msgs = append(msgs, map[string]any{"role": role, "content": c.Str})
			return true
		}
		var parts []map[string]any
		var calls []map[string]any
		var text []string
		c.ForEach(func(_, b gjson.Result) bool {
			switch b.Get("type").Str {
			case "text":
				parts = append(parts, map[string]any{"type": "text", "text": b.Get("text").Str})
				text = append(text, b.Get("text").Str)
			case "image":
				src := b.Get("source")
				url := src.Get("url").Str
				if src.Get("type").Str == "base64" {
					url = "data:" + src.Get("media_type").Str + ";base64," + src.Get("data").Str
				}
				parts = append(parts, map[string]any{"type": "image_url", "image_url": map[string]string{"url": url}})
			case "tool_use":
				args := b.Get("input").Raw
				if args == "" {
					args = "{}"
				}
				calls = append(calls, map[string]any{"id": b.Get("id").Str, "type": "function", "function": map[string]string{"name": b.Get("name").Str, "arguments": args}})
			case "tool_result":
				msgs = append(msgs, map[string]any{"role": "tool", "tool_call_id": b.Get("tool_use_id").Str, "content": textOf(b.Get("content"))})
			}
			return true
		})
		switch {
		case role == "assistant":
			am := map[string]any{"role": "assistant", "content": strings.Join(text, "")}
			if len(calls) > 0 {
				am["tool_calls"] = calls
			}
			if len(text) > 0 || len(calls) > 0 {
				msgs = append(msgs, am)
			}
		case len(parts) > 0:
			msgs = append(msgs, map[string]any{"role": role, "content": parts})
		}
		return true
	})
	out["messages"] = msgs
	if tools := root.Get("tools"); tools.IsArray() && len(tools.Array()) > 0 {
		var ts []any
		tools.ForEach(func(_, t gjson.Result) bool {
			var schema any
			_ = json.Unmarshal([]byte(t.Get("input_schema").Raw), &schema)
			ts = append(ts, map[string]any{"type": "function", "function": map[string]any{"name": t.Get("name").Str, "description": t.Get("description").Str, "parameters": schema}})
			return true
		})
		out["tools"] = ts
		switch tc := root.Get("tool_choice"); tc.Get("type").Str {
		case "any":
			out["tool_choice"] = "required"
		case "none":
			out["tool_choice"] = "none"
		case "tool":
			out["tool_choice"] = map[string]any{"type": "function", "function": map[string]string{"name": tc.Get("name").Str}}
		}
	}
	return json.Marshal(out)
}

func stopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	return "end_turn"
}

func anthropicUsage(u gjson.Result) map[string]int64 {
	cached := u.Get("prompt_tokens_details.cached_tokens").Int()
	return map[string]int64{"input_tokens": max(0, u.Get("prompt_tokens").Int()-cached), "output_tokens": u.Get("completion_tokens").Int(),
		"cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}
}

// FromOpenAIResponse turns a chat.completion into a Messages API message.
func FromOpenAIResponse(body []byte) ([]byte, error) {
	root := gjson.ParseBytes(body)
	ch := root.Get("choices.0")
	var content []any
	if t := ch.Get("message.content").Str; t != "" {
		content = append(content, map[string]string{"type": "text", "text": t})
	}
	ch.Get("message.tool_calls").ForEach(func(_, tc gjson.Result) bool {
		var input any = map[string]any{}
		_ = json.Unmarshal([]byte(tc.Get("function.arguments").Str), &input)
		content = append(content, map[string]any{"type": "tool_use", "id": tc.Get("id").Str, "name": tc.Get("function.name").Str, "input": input})
		return true
	})
	if content == nil {
		content = []any{}
	}
	return json.Marshal(map[string]any{"id": root.Get("id").Str, "type": "message", "role": "assistant", "model": root.Get("model").Str,
		"content": content, "stop_reason": stopReason(ch.Get("finish_reason").Str), "stop_sequence": nil, "usage": anthropicUsage(root.Get("usage"))})
}

// ReverseStream turns OpenAI chat.completion.chunk events into Messages API
// stream events.
type ReverseStream struct {
	started  bool
	block    int  // index of the open content block, -1 for none
	blockTxt bool // the open block is text
	tools    map[int64]int
	next     int
	finish   string
	id       string
	model    string
	done     bool
	delta    bool // message_delta sent
}

// NewReverseStream starts a translation.
func NewReverseStream() *ReverseStream {
	return &ReverseStream{block: -1, tools: map[int64]int{}}
}

func event(name string, v any) []byte {
	b, _ := json.Marshal(v)
	return []byte("event: " + name + "\ndata: " + string(b) + "\n\n")
}

func (s *ReverseStream) closeBlock() [][]byte {
	if s.block < 0 {
		return nil
	}
	out := [][]byte{event("content_block_stop", map[string]any{"type": "content_block_stop", "index": s.block})}
	s.block = -1
	return out
}

// Event translates one OpenAI event's data.
func (s *ReverseStream) Event(_ string, data []byte) [][]byte {
	if s.done {
		return nil
	}
	if string(data) == "[DONE]" {
		s.done = true
		var out [][]byte
		if !s.delta {
			// No usage chunk came: close the message without figures.
			out = append(s.closeBlock(), event("message_delta", map[string]any{"type": "message_delta",
				"delta": map[string]any{"stop_reason": stopReason(s.finish), "stop_sequence": nil}, "usage": map[string]int64{"output_tokens": 0}}))
		}
		return append(out, event("message_stop", map[string]any{"type": "message_stop"}))
	}
	if !gjson.ValidBytes(data) {
		return nil
	}
	root := gjson.ParseBytes(data)
	var out [][]byte
	if !s.started {
		s.started = true
		s.id, s.model = root.Get("id").Str, root.Get("model").Str
		out = append(out, event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
			"id": s.id, "type": "message", "role": "assistant", "model": s.model, "content": []any{}, "stop_reason": nil,
			"usage": map[string]int64{"input_tokens": 0, "output_tokens": 0}}}))
	}
	if e := root.Get("error"); e.Exists() {
		s.done = true
		return append(out, event("error", map[string]any{"type": "error", "error": map[string]string{"type": "api_error", "message": e.Get("message").Str}}))
	}
	root.Get("choices").ForEach(func(_, c gjson.Result) bool {
		if t := c.Get("delta.content").Str; t != "" {
			if s.block < 0 || !s.blockTxt {
				out = append(out, s.closeBlock()...)
				s.block, s.blockTxt = s.next, true
				s.next++
				out = append(out, event("content_block_start", map[string]any{"type": "content_block_start", "index": s.block, "content_block": map[string]string{"type": "text", "text": ""}}))
			}
			out = append(out, event("content_block_delta", map[string]any{"type": "content_block_delta", "index": s.block, "delta": map[string]string{"type": "text_delta", "text": t}}))
		}
		c.Get("delta.tool_calls").ForEach(func(_, tc gjson.Result) bool {
			ti := tc.Get("index").Int()
			idx, ok := s.tools[ti]
			if !ok {
				out = append(out, s.closeBlock()...)
				idx = s.next
				s.next++
				s.tools[ti] = idx
				s.block, s.blockTxt = idx, false
				out = append(out, event("content_block_start", map[string]any{"type": "content_block_start", "index": idx,
					"content_block": map[string]any{"type": "tool_use", "id": tc.Get("id").Str, "name": tc.Get("function.name").Str, "input": map[string]any{}}}))
			}
			if a := tc.Get("function.arguments").Str; a != "" {
				out = append(out, event("content_block_delta", map[string]any{"type": "content_block_delta", "index": idx, "delta": map[string]string{"type": "input_json_delta", "partial_json": a}}))
			}
			return true
		})
		if f := c.Get("finish_reason").Str; f != "" {
			s.finish = f
		}
		return true
	})
	if u := root.Get("usage"); u.IsObject() && !s.delta {
		s.delta = true
		out = append(out, s.closeBlock()...)
		out = append(out, event("message_delta", map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": stopReason(s.finish), "stop_sequence": nil}, "usage": anthropicUsage(u)}))
	}
	return out
}
