package gateway

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/llmgate/llmgate/llmerr"
)

// DefaultBodyTimeout bounds reading a request body.
const DefaultBodyTimeout = 30 * time.Second

// ReadBody reads a request body whole (every handler that takes an LLM
// request body reads it this way), refusing more than max bytes with 413 and
// a body that takes longer than timeout with 408.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64, timeout time.Duration) ([]byte, *llmerr.Error) {
	tooBig := func() *llmerr.Error {
		return llmerr.New(http.StatusRequestEntityTooLarge, "request_too_large",
			"request body exceeds the limit of "+humanize.IBytes(uint64(max)))
	}
	if r.ContentLength > max {
		return nil, tooBig()
	}
	rc := http.NewResponseController(w)
	if timeout > 0 {
		// Cleared once the body is in, so a long stream is not cut.
		if rc.SetReadDeadline(time.Now().Add(timeout)) == nil {
			defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
		}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		// What the client says it will send, up to 64 KiB: a declared
		// length is not an allocation a slow client can make us hold.
		buf.Grow(int(min(r.ContentLength, 64<<10)))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			return nil, tooBig()
		case errors.As(err, &ne) && ne.Timeout():
			w.Header().Set("Connection", "close")
			return nil, llmerr.New(http.StatusRequestTimeout, "request_timeout",
				"the request body did not arrive within "+timeout.String())
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			return nil, llmerr.New(http.StatusBadRequest, "incomplete_body", "the request body ended early")
		}
		return nil, llmerr.New(http.StatusBadRequest, "unreadable_body", "the request body could not be read")
	}
	return buf.Bytes(), nil
}
