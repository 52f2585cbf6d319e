package sse

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader: whatever an upstream sends, the events' raw bytes put back
// together are exactly the input (nothing lost, nothing invented), and no
// event exceeds the limit.
func FuzzReader(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("event: x\r\ndata: a\r\n\r\n"))
	f.Add([]byte("\n\n\ndata"))
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 4096
		r := NewReader(bytes.NewReader(in), max)
		var out []byte
		for {
			ev, err := r.Next()
			if errors.Is(err, ErrEventTooLarge) {
				return
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
				break
			}
			if len(ev.Raw) > max {
				t.Fatalf("event of %d bytes", len(ev.Raw))
			}
			out = append(out, ev.Raw...)
		}
		if !bytes.Equal(out, in) {
			t.Fatalf("round trip: got %q want %q", out, in)
		}
	})
}
