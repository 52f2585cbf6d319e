// Package reqview reads an OpenAI-style request body once and extracts what
// the rest of the chain needs (model, stream, max_tokens, needs), refusing bad
// bodies with a precise, OpenAI-shaped 400 before anything else happens.
package reqview

import (
	"net/http"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/llmgate/llmgate/llmerr"
)

// Endpoint is an API operation the gateway proxies.
type Endpoint uint8

const (
	Unknown Endpoint = iota
	Chat
	Completions
	Embeddings
	// Messages is Anthropic's Messages API.
	Messages
)

// Path returns the endpoint's path relative to a provider's base URL.
func (e Endpoint) Path() string {
	switch e {
	case Chat:
		return "/chat/completions"
	case Completions:
		return "/completions"
	case Embeddings:
		return "/embeddings"
	case Messages:
		return "/messages"
	}
	return ""
}

func (e Endpoint) String() string {
	if p := e.Path(); p != "" {
		return p[1:]
	}
	return "unknown"
}

// EndpointFor maps a request path (with any mount prefix) to an endpoint.
func EndpointFor(path string) Endpoint {
	for _, e := range []Endpoint{Chat, Completions, Embeddings, Messages} {
		p := e.Path()
		if len(path) >= len(p) && path[len(path)-len(p):] == p {
			// "/chat/completions" also ends in "/completions": the longer wins by order.
			return e
		}
	}
	return Unknown
}

// MaxDepth bounds JSON nesting; deeper bodies are refused before any
// recursive parser sees them.
const MaxDepth = 64

// View is what the chain learns from the body.
type View struct {
	Endpoint     Endpoint
	Model        string
	Stream       bool
	IncludeUsage bool
	MaxTokens    int64 // 0 when the client did not set one
	N            int64
	HasImages    bool
	HasTools     bool
	JSONMode     bool
}

func bad(param, msg string) *llmerr.Error {
	return llmerr.New(http.StatusBadRequest, "invalid_request_error", msg).WithParam(param)
}

// Parse validates body for endpoint e and returns its view.
func Parse(e Endpoint, body []byte) (View, *llmerr.Error) {
	v := View{Endpoint: e, N: 1}
	if len(body) == 0 {
		return v, bad("", "request body is empty; expected a JSON object")
	}
	if !utf8.Valid(body) {
		return v, bad("", "request body is not valid UTF-8")
	}
	if err := checkDepth(body); err != nil {
		return v, err
	}
	if !gjson.ValidBytes(body) {
		return v, bad("", "request body is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return v, bad("", "request body must be a JSON object")
	}
	var model, stream, maxTok, maxCompl, n, usage, msgs, prompt, input, tools, funcs, rf gjson.Result
	root.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "model":
			model = val
		case "stream":
			stream = val
		case "max_tokens":
			maxTok = val
		case "max_completion_tokens":
			maxCompl = val
		case "n":
			n = val
		case "stream_options":
			usage = val.Get("include_usage")
		case "messages":
			msgs = val
		case "prompt":
			prompt = val
		case "input":
			input = val
		case "tools":
			tools = val
		case "functions":
			funcs = val
		case "response_format":
			rf = val
		}
		return true
	})
	if model.Type != gjson.String || model.Str == "" {
		return v, bad("model", "you must provide a model parameter (a string)")
	}
	v.Model = model.Str
	switch e {
	case Messages:
		if !msgs.IsArray() || len(msgs.Array()) == 0 {
			return v, bad("messages", "messages must be a non-empty array")
		}
		for _, m := range msgs.Array() {
			if !m.IsObject() || m.Get("role").Type != gjson.String {
				return v, bad("messages", "each message must be an object with a string role")
			}
			m.Get("content").ForEach(func(_, part gjson.Result) bool {
				if part.Get("type").Str == "image" {
					v.HasImages = true
				}
				return true
			})
		}
		if !maxTok.Exists() {
			return v, bad("max_tokens", "max_tokens is required")
		}
	case Chat:
		if !msgs.IsArray() || len(msgs.Array()) == 0 {
			return v, bad("messages", "messages must be a non-empty array")
		}
		for _, m := range msgs.Array() {
			if !m.IsObject() || m.Get("role").Type != gjson.String {
				return v, bad("messages", "each message must be an object with a string role")
			}
			c := m.Get("content")
			if c.IsArray() {
				c.ForEach(func(_, part gjson.Result) bool {
					if t := part.Get("type").Str; t == "image_url" || t == "input_image" {
						v.HasImages = true
					}
					return true
				})
			}
		}
	case Completions:
		if !prompt.Exists() || (prompt.Type != gjson.String && !prompt.IsArray()) {
			return v, bad("prompt", "prompt must be a string or an array")
		}
	case Embeddings:
		if !input.Exists() || (input.Type != gjson.String && !input.IsArray()) {
			return v, bad("input", "input must be a string or an array")
		}
	}
	if stream.Exists() {
		if !isBool(stream) {
			return v, bad("stream", "stream must be a boolean")
		}
		v.Stream = stream.Bool()
	}
	if v.Stream && e == Embeddings {
		return v, bad("stream", "embeddings cannot be streamed")
	}
	if usage.Exists() {
		if !isBool(usage) {
			return v, bad("stream_options.include_usage", "include_usage must be a boolean")
		}
		v.IncludeUsage = usage.Bool()
	}
	for _, p := range []struct {
		name string
		r    gjson.Result
	}{{"max_tokens", maxTok}, {"max_completion_tokens", maxCompl}} {
		if !p.r.Exists() || p.r.Type == gjson.Null {
			continue
		}
		x, ok := posInt(p.r)
		if !ok {
			return v, bad(p.name, p.name+" must be a positive integer")
		}
		if x > v.MaxTokens {
			v.MaxTokens = x
		}
	}
	if n.Exists() && n.Type != gjson.Null {
		x, ok := posInt(n)
		if !ok || x > 128 {
			return v, bad("n", "n must be an integer from 1 to 128")
		}
		v.N = x
	}
	v.HasTools = (tools.IsArray() && len(tools.Array()) > 0) || (funcs.IsArray() && len(funcs.Array()) > 0)
	if t := rf.Get("type").Str; t == "json_object" || t == "json_schema" {
		v.JSONMode = true
	}
	return v, nil
}

func isBool(r gjson.Result) bool { return r.Type == gjson.True || r.Type == gjson.False }

// posInt accepts a JSON integer in [1, 2^31).
func posInt(r gjson.Result) (int64, bool) {
	if r.Type != gjson.Number {
		return 0, false
	}
	for _, c := range r.Raw {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	if len(r.Raw) > 10 {
		return 0, false
	}
	x := r.Int()
	return x, x >= 1 && x < 1<<31
}

// checkDepth refuses JSON nested deeper than MaxDepth, in one pass that
// skips string contents.
func checkDepth(b []byte) *llmerr.Error {
	depth, inStr, esc := 0, false, false
	for _, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
			if depth > MaxDepth {
				return bad("", "request body is nested too deeply")
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}
