package anthropic

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// FinishReason maps Anthropic's stop_reason to OpenAI's finish_reason.
func FinishReason(stop string) string {
	switch stop {
	case "max_tokens":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	case "":
		return ""
	}
	return "stop" // end_turn, stop_sequence, pause_turn
}

// usageOf turns Anthropic usage into OpenAI usage. Prompt tokens include
// cached ones, as OpenAI counts them; the cache figures ride in the details.
func usageOf(u gjson.Result) map[string]any {
	in := u.Get("input_tokens").Int()
	read := u.Get("cache_read_input_tokens").Int()
	write := u.Get("cache_creation_input_tokens").Int()
	out := u.Get("output_tokens").Int()
	prompt := in + read + write
	return map[string]any{
		"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
		"prompt_tokens_details": map[string]int64{"cached_tokens": read, "cache_creation_tokens": write},
	}
}

// ToOpenAI turns a Messages API response into a chat.completion.
func ToOpenAI(body []byte) ([]byte, error) {
	root := gjson.ParseBytes(body)
	var text strings.Builder
	var calls []map[string]any
	root.Get("content").ForEach(func(_, b gjson.Result) bool {
		switch b.Get("type").Str {
		case "text":
			text.WriteString(b.Get("text").Str)
		case "tool_use":
			args := b.Get("input").Raw
			if args == "" {
				args = "{}"
			}
			calls = append(calls, map[string]any{"id": b.Get("id").Str, "type": "function",
				"function": map[string]string{"name": b.Get("name").Str, "arguments": args}})
		}
		return true
	})
	msg := map[string]any{"role": "assistant", "content": text.String()}
	if len(calls) > 0 {
		msg["tool_calls"] = calls
		if text.Len() == 0 {
			msg["content"] = nil
		}
	}
	return json.Marshal(map[string]any{
		"id": root.Get("id").Str, "object": "chat.completion", "created": 0, "model": root.Get("model").Str,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": FinishReason(root.Get("stop_reason").Str)}},
		"usage":   usageOf(root.Get("usage")),
	})
}

// ErrorToOpenAI turns a Messages API error body into OpenAI's error shape.
func ErrorToOpenAI(body []byte, status int) ([]byte, error) {
	root := gjson.ParseBytes(body)
	msg := root.Get("error.message").Str
	if msg == "" {
		msg = "the provider answered HTTP " + strconv.Itoa(status)
	}
	typ := root.Get("error.type").Str
	if typ == "invalid_request_error" || typ == "" {
		typ = "invalid_request_error"
	}
	return json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": root.Get("error.type").Str}})
}
