// Package sse reads a text/event-stream from an upstream one event at a time,
// so the gateway can pass each event on as soon as it is complete and look at
// its data (usage chunks, [DONE], errors) without buffering the stream.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// ErrEventTooLarge is returned when one event exceeds the reader's limit.
var ErrEventTooLarge = errors.New("sse: event exceeds size limit")

// Event is one event. Raw is the event's bytes as received, terminator
// included, valid until the next call to Next; Data is the joined data lines.
type Event struct {
	Raw  []byte
	Data []byte
	Name []byte
}

// Done reports whether this is OpenAI's end-of-stream sentinel.
func (e *Event) Done() bool { return bytes.Equal(e.Data, []byte("[DONE]")) }

// Reader splits a stream into events.
type Reader struct {
	br    *bufio.Reader
	max   int
	raw   []byte
	data  []byte
	name  []byte
	event Event
}

// NewReader reads events of at most max bytes from r.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 4<<10), max: max}
}

// Next returns the next event. At the end of the stream it returns any
// unterminated final event first, then io.EOF. An event over the limit gives
// ErrEventTooLarge.
func (r *Reader) Next() (*Event, error) {
	r.raw, r.data, r.name = r.raw[:0], r.data[:0], r.name[:0]
	hasData := false
	for {
		line, err := r.br.ReadSlice('\n')
		if len(r.raw)+len(line) > r.max {
			return nil, ErrEventTooLarge
		}
		r.raw = append(r.raw, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: keep reading the rest of it.
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.br.ReadSlice('\n')
				if len(r.raw)+len(line) > r.max {
					return nil, ErrEventTooLarge
				}
				r.raw = append(r.raw, line...)
			}
			line = r.raw[bytes.LastIndexByte(r.raw[:len(r.raw)-1], '\n')+1:]
		}
		if err != nil && len(line) == 0 {
			if len(r.raw) > 0 {
				return r.emit(), nil
			}
			return nil, err
		}
		content := bytes.TrimRight(line, "\r\n")
		if len(content) == 0 {
			if len(r.raw) == len(line) {
				// Blank lines between events: pass them with the next event.
				if err != nil {
					return r.emit(), nil
				}
				continue
			}
			return r.emit(), nil
		}
		field, value, _ := bytes.Cut(content, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if hasData {
				r.data = append(r.data, '\n')
			}
			r.data = append(r.data, value...)
			hasData = true
		case "event":
			r.name = append(r.name[:0], value...)
		}
		if err != nil {
			return r.emit(), nil
		}
	}
}

func (r *Reader) emit() *Event {
	r.event = Event{Raw: r.raw, Data: r.data, Name: r.name}
	return &r.event
}

// Cut splits the first complete event off buf: the event's bytes with its
// terminating blank line, and the rest. ok is false when buf holds no
// complete event yet. Blank lines before an event belong to it.
func Cut(buf []byte) (event, rest []byte, ok bool) {
	i := 0
	for i < len(buf) {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return nil, buf, false
		}
		line := buf[i : i+j]
		i += j + 1
		if len(bytes.TrimRight(line, "\r")) == 0 && len(bytes.TrimSpace(buf[:i])) > 0 {
			return buf[:i], buf[i:], true
		}
	}
	return nil, buf, false
}

// DataOf joins the data lines of one event's raw bytes.
func DataOf(raw []byte) []byte {
	var data []byte
	n := 0
	for len(raw) > 0 {
		line := raw
		if j := bytes.IndexByte(raw, '\n'); j >= 0 {
			line, raw = raw[:j], raw[j+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimRight(line, "\r")
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			v = bytes.TrimPrefix(v, []byte(" "))
			if n > 0 {
				data = append(data, '\n')
			}
			data = append(data, v...)
			n++
		}
	}
	return data
}
