package credits

import (
	"bytes"

	"github.com/tidwall/gjson"

	"github.com/llmgate/llmgate/sse"
)

// Usage is what a response consumed.
type Usage struct {
	// In counts every prompt token, cached ones included (OpenAI's way);
	// CacheRead and CacheWrite say how many of them were cache reads and
	// cache writes (Anthropic prices them apart).
	In, Out    int64
	CacheRead  int64
	CacheWrite int64
	// Reported is true when the provider sent these figures; false when
	// they were counted from what streamed (an estimate).
	Reported bool
	// Model is the model the response names (for routers that choose it).
	Model string
}

// usageOf reads an OpenAI usage object.
func usageOf(u gjson.Result) (Usage, bool) {
	if !u.IsObject() {
		return Usage{}, false
	}
	in, out := u.Get("prompt_tokens"), u.Get("completion_tokens")
	if !in.Exists() && !out.Exists() {
		// Anthropic: input_tokens leaves out the cached ones.
		ai, ao := u.Get("input_tokens"), u.Get("output_tokens")
		if !ai.Exists() && !ao.Exists() {
			return Usage{}, false
		}
		cr, cw := max(0, u.Get("cache_read_input_tokens").Int()), max(0, u.Get("cache_creation_input_tokens").Int())
		return Usage{In: max(0, ai.Int()) + cr + cw, Out: max(0, ao.Int()), CacheRead: cr, CacheWrite: cw, Reported: true}, true
	}
	return Usage{In: max(0, in.Int()), Out: max(0, out.Int()), CacheRead: max(0, u.Get("prompt_tokens_details.cached_tokens").Int()),
		CacheWrite: max(0, u.Get("prompt_tokens_details.cache_creation_tokens").Int()), Reported: true}, true
}

// UsageFromJSON reads the usage of a non-streamed response body.
func UsageFromJSON(body []byte) (Usage, bool) {
	u, ok := usageOf(gjson.GetBytes(body, "usage"))
	u.Model = gjson.GetBytes(body, "model").Str
	return u, ok
}

// MaxPending bounds the bytes of one incomplete event the meter holds.
const MaxPending = 4 << 20

// StreamMeter watches an SSE response pass by: it forwards each complete
// event at once, reads the usage chunk, counts streamed content for an
// estimate when no usage comes, drops the usage chunk when the client did
// not ask for it, and notices a stream that outruns its hold.
type StreamMeter struct {
	// StripUsage drops usage-only chunks (the client did not ask for them).
	StripUsage bool
	// MaxChunks, when positive, is the most content chunks the hold covers.
	MaxChunks int64
	// HoldTerminal keeps the stream's terminal event (`data: [DONE]`, or
	// Anthropic's message_stop) back instead of forwarding it; Terminal
	// returns it, to be sent once the request is settled, so a client sees
	// a stream complete only after it is billed.
	HoldTerminal bool

	pending  []byte
	usage    Usage
	anthIn   Usage // input counts from message_start, until message_delta
	model    string
	chunks   int64
	bytesOut int64
	overrun  bool
	done     bool
	terminal []byte
}

// Terminal is the terminal event held back (HoldTerminal), or nil.
func (m *StreamMeter) Terminal() []byte { return m.terminal }

// Feed takes bytes the upstream wrote and calls emit with what the client
// should get. It returns emit's error, or ErrOverrun once the stream outruns
// its hold (the event that did so is not forwarded).
func (m *StreamMeter) Feed(p []byte, emit func([]byte) error) error {
	if m.overrun {
		return ErrOverrun
	}
	m.pending = append(m.pending, p...)
	for {
		ev, rest, ok := sse.Cut(m.pending)
		if !ok {
			break
		}
		forward := m.inspect(ev)
		if m.overrun {
			m.pending = m.pending[:0]
			return ErrOverrun
		}
		if forward {
			if err := emit(ev); err != nil {
				m.pending = append(m.pending[:0], rest...)
				return err
			}
		}
		m.pending = append(m.pending[:0], rest...)
	}
	if len(m.pending) > MaxPending {
		// An absurd event: pass it on unparsed rather than hold it.
		err := emit(m.pending)
		m.pending = m.pending[:0]
		return err
	}
	return nil
}

// Flush forwards whatever partial event is left at the end.
func (m *StreamMeter) Flush(emit func([]byte) error) error {
	if len(m.pending) == 0 {
		return nil
	}
	err := emit(m.pending)
	m.pending = m.pending[:0]
	return err
}

// ErrOverrun: the stream produced more than its hold covers.
var ErrOverrun = overrunError{}

type overrunError struct{}

func (overrunError) Error() string { return "stream exceeded the credit held for it" }

// inspect reads one event; it reports whether to forward it.
func (m *StreamMeter) inspect(ev []byte) bool {
	data := sse.DataOf(ev)
	if len(data) == 0 {
		return true
	}
	if bytes.Equal(data, []byte("[DONE]")) {
		m.done = true
		return !m.holdTerminal(ev)
	}
	if !gjson.ValidBytes(data) {
		return true
	}
	root := gjson.ParseBytes(data)
	if m.model == "" {
		m.model = root.Get("model").Str
	}
	switch root.Get("type").Str { // Anthropic's Messages API events
	case "message_start":
		if m.model == "" {
			m.model = root.Get("message.model").Str
		}
		m.anthIn, _ = usageOf(root.Get("message.usage"))
		return true
	case "message_delta":
		if u := root.Get("usage"); u.Get("output_tokens").Exists() {
			m.usage = m.anthIn
			m.usage.Out = max(0, u.Get("output_tokens").Int())
			if in := u.Get("input_tokens"); in.Exists() && in.Int() > 0 {
				cr, cw := max(0, u.Get("cache_read_input_tokens").Int()), max(0, u.Get("cache_creation_input_tokens").Int())
				m.usage.In, m.usage.CacheRead, m.usage.CacheWrite = in.Int()+cr+cw, cr, cw
			}
			m.usage.Reported = true
		}
		return true
	case "content_block_delta":
		if n := int64(len(root.Get("delta.text").Str) + len(root.Get("delta.partial_json").Str)); n > 0 {
			m.bytesOut += n
			m.chunks++
			if m.MaxChunks > 0 && m.chunks > m.MaxChunks {
				m.overrun = true
				return false
			}
		}
		return true
	case "message_stop":
		m.done = true
		return !m.holdTerminal(ev)
	}
	if u, ok := usageOf(root.Get("usage")); ok {
		m.usage = u
	}
	content := false
	root.Get("choices").ForEach(func(_, c gjson.Result) bool {
		n := int64(len(c.Get("delta.content").Str) + len(c.Get("text").Str) + len(c.Get("delta.reasoning_content").Str))
		c.Get("delta.tool_calls").ForEach(func(_, tc gjson.Result) bool {
			n += int64(len(tc.Get("function.arguments").Str))
			return true
		})
		if n > 0 {
			m.bytesOut += n
			content = true
		}
		return true
	})
	if content {
		m.chunks++
		if m.MaxChunks > 0 && m.chunks > m.MaxChunks {
			m.overrun = true
			return false
		}
	}
	if m.StripUsage && root.Get("usage").IsObject() {
		ch := root.Get("choices")
		if !ch.Exists() || (ch.IsArray() && len(ch.Array()) == 0) {
			return false
		}
	}
	return true
}

// holdTerminal keeps a terminal event back when asked to.
func (m *StreamMeter) holdTerminal(ev []byte) bool {
	if !m.HoldTerminal {
		return false
	}
	m.terminal = append(m.terminal[:0], ev...)
	return true
}

// Usage is what the stream reported, or an estimate from what streamed:
// at least one token per content chunk, and about four bytes per token.
func (m *StreamMeter) Usage(estimatedIn int64) Usage {
	if m.usage.Reported {
		u := m.usage
		u.Model = m.model
		return u
	}
	out := max(m.chunks, (m.bytesOut+3)/4)
	return Usage{In: estimatedIn, Out: out, Model: m.model}
}

// Done reports whether the stream reached [DONE].
func (m *StreamMeter) Done() bool { return m.done }
