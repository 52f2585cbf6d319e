package anthropic

import (
	"encoding/json"
	"time"

	"github.com/tidwall/gjson"
)

// Stream turns Messages API stream events into OpenAI chat.completion.chunk
// events, one event at a time.
type Stream struct {
	// IncludeUsage emits the final usage chunk (stream_options.include_usage).
	IncludeUsage bool

	id, model string
	created   int64
	usage     gjson.Result
	finish    string
	tools     map[int64]int // content block index → tool call index
	done      bool
}

// NewStream starts a translation.
func NewStream(includeUsage bool) *Stream {
	return &Stream{IncludeUsage: includeUsage, created: time.Now().Unix(), tools: map[int64]int{}}
}

func (s *Stream) chunk(delta map[string]any, finish any) []byte {
	b, _ := json.Marshal(map[string]any{"id": s.id, "object": "chat.completion.chunk", "created": s.created, "model": s.model,
		"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}})
	return sseData(b)
}

func sseData(b []byte) []byte {
	out := make([]byte, 0, len(b)+8)
	out = append(out, "data: "...)
	out = append(out, b...)
	return append(out, '\n', '\n')
}

// Event translates one Anthropic event (its name and data) into zero or
// more OpenAI events, ready to write.
func (s *Stream) Event(name string, data []byte) [][]byte {
	if s.done || !gjson.ValidBytes(data) {
		return nil
	}
	ev := gjson.ParseBytes(data)
	if name == "" {
		name = ev.Get("type").Str
	}
	switch name {
	case "message_start":
		m := ev.Get("message")
		s.id, s.model = m.Get("id").Str, m.Get("model").Str
		s.usage = m.Get("usage")
		return [][]byte{s.chunk(map[string]any{"role": "assistant", "content": ""}, nil)}
	case "content_block_start":
		if cb := ev.Get("content_block"); cb.Get("type").Str == "tool_use" {
			i := len(s.tools)
			s.tools[ev.Get("index").Int()] = i
			return [][]byte{s.chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "id": cb.Get("id").Str, "type": "function",
				"function": map[string]string{"name": cb.Get("name").Str, "arguments": ""}}}}, nil)}
		}
	case "content_block_delta":
		d := ev.Get("delta")
		switch d.Get("type").Str {
		case "text_delta":
			return [][]byte{s.chunk(map[string]any{"content": d.Get("text").Str}, nil)}
		case "input_json_delta":
			if i, ok := s.tools[ev.Get("index").Int()]; ok {
				return [][]byte{s.chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i,
					"function": map[string]string{"arguments": d.Get("partial_json").Str}}}}, nil)}
			}
		}
	case "message_delta":
		s.finish = FinishReason(ev.Get("delta.stop_reason").Str)
		// message_delta carries the final output count; input counts came in message_start.
		merged := map[string]any{}
		_ = json.Unmarshal([]byte(s.usage.Raw), &merged)
		ev.Get("usage").ForEach(func(k, v gjson.Result) bool {
			if v.Int() > 0 || k.Str == "output_tokens" {
				merged[k.Str] = v.Int()
			}
			return true
		})
		b, _ := json.Marshal(merged)
		s.usage = gjson.ParseBytes(b)
	case "message_stop":
		s.done = true
		finish := s.finish
		if finish == "" {
			finish = "stop"
		}
		out := [][]byte{s.chunk(map[string]any{}, finish)}
		if s.IncludeUsage {
			b, _ := json.Marshal(map[string]any{"id": s.id, "object": "chat.completion.chunk", "created": s.created, "model": s.model,
				"choices": []any{}, "usage": usageOf(s.usage)})
			out = append(out, sseData(b))
		}
		return append(out, []byte("data: [DONE]\n\n"))
	case "error":
		s.done = true
		b, _ := json.Marshal(map[string]any{"error": map[string]string{"message": ev.Get("error.message").Str,
			"type": ev.Get("error.type").Str, "code": "upstream_stream_error"}})
		return [][]byte{sseData(b)}
	}
	return nil
}

// Done reports whether the stream ended (message_stop or error).
func (s *Stream) Done() bool { return s.done }
