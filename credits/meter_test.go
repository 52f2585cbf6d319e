package credits

import (
	"errors"
	"strings"
	"testing"
)

func feedAll(t *testing.T, m *StreamMeter, parts ...string) (string, error) {
	t.Helper()
	var out strings.Builder
	emit := func(b []byte) error { out.Write(b); return nil }
	for _, p := range parts {
		if err := m.Feed([]byte(p), emit); err != nil {
			return out.String(), err
		}
	}
	return out.String(), m.Flush(emit)
}

const (
	c1    = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello \"}}]}\n\n"
	c2    = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"world\"}}]}\n\n"
	use   = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n"
	done_ = "data: [DONE]\n\n"
)

func TestStreamMeterReadsUsageAndStripsIt(t *testing.T) {
	m := &StreamMeter{StripUsage: true}
	// Split mid-event to check partial events wait for their end.
	out, err := feedAll(t, m, c1[:10], c1[10:]+c2, use[:30], use[30:]+done_)
	if err != nil {
		t.Fatal(err)
	}
	if out != c1+c2+done_ {
		t.Fatalf("forwarded %q", out)
	}
	if u := m.Usage(0); u != (Usage{In: 11, Out: 2, CacheRead: 3, Reported: true}) || !m.Done() {
		t.Fatalf("%+v", u)
	}
	// A client that asked for usage gets the chunk.
	m = &StreamMeter{}
	out, _ = feedAll(t, m, c1, use, done_)
	if out != c1+use+done_ {
		t.Fatalf("%q", out)
	}
}

func TestStreamMeterEstimatesWithoutUsage(t *testing.T) {
	m := &StreamMeter{}
	if _, err := feedAll(t, m, c1, c2); err != nil {
		t.Fatal(err)
	}
	// 11 bytes of content in 2 chunks → max(2, ceil(11/4)=3) = 3
	if u := m.Usage(40); u.Reported || u.Out != 3 || u.In != 40 {
		t.Fatalf("%+v", u)
	}
}

func TestStreamMeterStopsAnOverrun(t *testing.T) {
	m := &StreamMeter{MaxChunks: 1}
	out, err := feedAll(t, m, c1, c2, done_)
	if !errors.Is(err, ErrOverrun) || out != c1 {
		t.Fatalf("%q %v", out, err)
	}
}

func TestUsageFromJSON(t *testing.T) {
	u, ok := UsageFromJSON([]byte(`{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}`))
	if !ok || u.In != 5 || u.Out != 7 {
		t.Fatal(u)
	}
	if _, ok := UsageFromJSON([]byte(`{"choices":[]}`)); ok {
		t.Fatal("usage invented")
	}
}

// FuzzStreamMeter: whatever an upstream sends, split anywhere, the meter
// forwards exactly the input minus the events it drops, and never panics.
func FuzzStreamMeter(f *testing.F) {
	f.Add([]byte(c1+use+done_), uint8(7), true)
	f.Add([]byte("data: {\"usage\":{\"prompt_tokens\":-5}}\r\n\r\n"), uint8(3), false)
	f.Add([]byte("\n\n\ndata"), uint8(1), true)
	f.Fuzz(func(t *testing.T, in []byte, split uint8, strip bool) {
		m := &StreamMeter{StripUsage: strip}
		var out []byte
		emit := func(b []byte) error { out = append(out, b...); return nil }
		k := int(split)%max(1, len(in)) + 1
		for i := 0; i < len(in); i += k {
			if err := m.Feed(in[i:min(len(in), i+k)], emit); err != nil {
				t.Fatal(err)
			}
		}
		_ = m.Flush(emit)
		if !strip && string(out) != string(in) {
			t.Fatalf("not passed through: %q → %q", in, out)
		}
		if len(out) > len(in) {
			t.Fatal("meter invented bytes")
		}
		u := m.Usage(0)
		if u.In < 0 || u.Out < 0 {
			t.Fatalf("negative usage %+v", u)
		}
	})
}

func TestStreamMeterHoldsTheTerminalEvent(t *testing.T) {
	m := &StreamMeter{HoldTerminal: true}
	out, err := feedAll(t, m, c1, c2[:7], c2[7:]+use+done_)
	if err != nil {
		t.Fatal(err)
	}
	if out != c1+c2+use || string(m.Terminal()) != done_ || !m.Done() {
		t.Fatalf("forwarded %q, held %q", out, m.Terminal())
	}
	// Anthropic's message_stop is its terminal event.
	stop := "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	m = &StreamMeter{HoldTerminal: true}
	out, _ = feedAll(t, m, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n", stop)
	if strings.Contains(out, "message_stop") || string(m.Terminal()) != stop {
		t.Fatalf("forwarded %q, held %q", out, m.Terminal())
	}
	// A stream cut before its end has nothing held.
	m = &StreamMeter{HoldTerminal: true}
	if _, _ = feedAll(t, m, c1); m.Terminal() != nil {
		t.Fatal("held something from an unfinished stream")
	}
}
