// Package anthropic translates between OpenAI's chat completions and
// Anthropic's Messages API, both ways: requests, responses and streams, so
// OpenAI clients reach Claude models with nothing changed.
package anthropic

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmgate/llmgate/llmerr"
)

// Version is the anthropic-version header sent to the Messages API.
const Version = "2023-06-01"

// unsupported are OpenAI fields the Messages API has no equivalent for; a
// request using them is refused rather than silently changed.
var unsupported = []string{"logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "seed", "audio", "modalities", "prediction"}

func bad(param, msg string) *llmerr.Error {
	return llmerr.New(http.StatusBadRequest, "unsupported_parameter", msg).WithParam(param)
}

type block = map[string]any

// FromOpenAI turns an OpenAI chat completions body into a Messages API body
// for model. defaultMaxTokens fills max_tokens, which Anthropic requires.
func FromOpenAI(body []byte, model string, defaultMaxTokens int64) ([]byte, *llmerr.Error) {
	root := gjson.ParseBytes(body)
	for _, f := range unsupported {
		if v := root.Get(f); v.Exists() && v.Type != gjson.Null && !(v.Type == gjson.False) {
			return nil, bad(f, "`"+f+"` is not supported by Anthropic models")
		}
	}
	if n := root.Get("n"); n.Exists() && n.Int() > 1 {
		return nil, bad("n", "`n` greater than 1 is not supported by Anthropic models")
	}
	if rf := root.Get("response_format.type").Str; rf == "json_schema" {
		return nil, bad("response_format", "`response_format` json_schema is not supported by Anthropic models; describe the schema in the prompt")
	}
	out := map[string]any{"model": model}
	maxTok := root.Get("max_completion_tokens").Int()
	if maxTok == 0 {
		maxTok = root.Get("max_tokens").Int()
	}
	if maxTok == 0 {
		maxTok = defaultMaxTokens
	}
	out["max_tokens"] = maxTok
	for _, f := range []string{"temperature", "top_p"} {
		if v := root.Get(f); v.Exists() && v.Type == gjson.Number {
			out[f] = v.Float()
		}
	}
	if st := root.Get("stop"); st.Exists() {
		var seqs []string
		if st.Type == gjson.String {
			seqs = []string{st.Str}
		} else {
			st.ForEach(func(_, v gjson.Result) bool { seqs = append(seqs, v.Str); return true })
		}
		if len(seqs) > 0 {
			out["stop_sequences"] = seqs
		}
	}
	if root.Get("stream").Bool() {
		out["stream"] = true
	}
	if u := root.Get("user").Str; u != "" {
		out["metadata"] = map[string]string{"user_id": u}
	}
	var system []string
	var msgs []map[string]any
	var err *llmerr.Error
	root.Get("messages").ForEach(func(_, m gjson.Result) bool {
		role := m.Get("role").Str
		switch role {
		case "system", "developer":
			system = append(system, textOf(m.Get("content")))
		case "user":
			var blocks []block
			if blocks, err = contentBlocks(m.Get("content")); err != nil {
				return false
			}
			msgs = appendMsg(msgs, "user", blocks)
		case "assistant":
			var blocks []block
			if t := textOf(m.Get("content")); t != "" {
				blocks = append(blocks, block{"type": "text", "text": t})
			}
			m.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
				var input any = map[string]any{}
				if args := tc.Get("function.arguments").Str; args != "" {
					if json.Unmarshal([]byte(args), &input) != nil {
						input = map[string]any{}
					}
				}
				blocks = append(blocks, block{"type": "tool_use", "id": tc.Get("id").Str, "name": tc.Get("function.name").Str, "input": input})
				return true
			})
			if len(blocks) > 0 {
				msgs = appendMsg(msgs, "assistant", blocks)
			}
		case "tool":
			msgs = appendMsg(msgs, "user", []block{{"type": "tool_result", "tool_use_id": m.Get("tool_call_id").Str, "content": textOf(m.Get("content"))}})
		default:
			err = bad("messages", "message role `"+role+"` is not supported")
			return false
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, bad("messages", "Anthropic models need at least one user or assistant message")
	}
	if len(system) > 0 {
		out["system"] = strings.Join(system, "\n\n")
	}
	out["messages"] = msgs
	if tools := root.Get("tools"); tools.IsArray() && len(tools.Array()) > 0 {
		var ts []map[string]any
		tools.ForEach(func(_, t gjson.Result) bool {
			var schema any = map[string]any{"type": "object"}
			if p := t.Get("function.parameters"); p.Exists() {
				_ = json.Unmarshal([]byte(p.Raw), &schema)
			}
			tool := map[string]any{"name": t.Get("function.name").Str, "input_schema": schema}
			if d := t.Get("function.description").Str; d != "" {
				tool["description"] = d
			}
			ts = append(ts, tool)
			return true
		})
		out["tools"] = ts
		switch tc := root.Get("tool_choice"); {
		case tc.Str == "required":
			out["tool_choice"] = map[string]string{"type": "any"}
		case tc.Str == "none":
			out["tool_choice"] = map[string]string{"type": "none"}
		case tc.IsObject():
			out["tool_choice"] = map[string]string{"type": "tool", "name": tc.Get("function.name").Str}
		}
	}
	b, e := json.Marshal(out)
	if e != nil {
		return nil, bad("", "the request could not be translated")
	}
	return b, nil
}

// appendMsg merges consecutive turns of one role, as Anthropic requires
// alternating roles.
func appendMsg(msgs []map[string]any, role string, blocks []block) []map[string]any {
	if n := len(msgs); n > 0 && msgs[n-1]["role"] == role {
		msgs[n-1]["content"] = append(msgs[n-1]["content"].([]block), blocks...)
		return msgs
	}
	return append(msgs, map[string]any{"role": role, "content": blocks})
}

func textOf(c gjson.Result) string {
	if c.Type == gjson.String {
		return c.Str
	}
	var parts []string
	c.ForEach(func(_, p gjson.Result) bool {
		if t := p.Get("text"); t.Type == gjson.String {
			parts = append(parts, t.Str)
		}
		return true
	})
	return strings.Join(parts, "\n")
}

func contentBlocks(c gjson.Result) ([]block, *llmerr.Error) {
	if c.Type == gjson.String {
		return []block{{"type": "text", "text": c.Str}}, nil
	}
	var out []block
	var err *llmerr.Error
	c.ForEach(func(_, p gjson.Result) bool {
		switch p.Get("type").Str {
		case "text":
			out = append(out, block{"type": "text", "text": p.Get("text").Str})
		case "image_url":
			url := p.Get("image_url.url").Str
			if rest, ok := strings.CutPrefix(url, "data:"); ok {
				media, data, ok := strings.Cut(rest, ";base64,")
				if !ok || media == "" {
					err = bad("messages", "image data URLs must be base64 (data:<type>;base64,<data>)")
					return false
				}
				if _, e := base64.StdEncoding.DecodeString(data); e != nil {
					err = bad("messages", "an image's base64 data does not decode")
					return false
				}
				out = append(out, block{"type": "image", "source": map[string]string{"type": "base64", "media_type": media, "data": data}})
			} else {
				out = append(out, block{"type": "image", "source": map[string]string{"type": "url", "url": url}})
			}
		default:
			err = bad("messages", "content part type `"+p.Get("type").Str+"` is not supported by Anthropic models")
			return false
		}
		return true
	})
	return out, err
}
