// Package llmerr writes errors in the shape OpenAI clients parse:
// {"error":{"message":…,"type":…,"param":…,"code":…}}. Every error a client of
// llmgate sees goes through here, so SDKs surface the message instead of a
// decoding failure.
package llmerr

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Error is an OpenAI-shaped API error with the HTTP status it goes out with.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Param   string `json:"param,omitempty"`
	Code    string `json:"code,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header (seconds, rounded up).
	RetryAfter time.Duration `json:"-"`
	// Headers are sent with the error (x-ratelimit-* on a 429).
	Headers map[string]string `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// New builds an error; typ defaults from the status when empty.
func New(status int, code, msg string) *Error {
	return &Error{Status: status, Message: msg, Type: TypeFor(status), Code: code}
}

// WithParam names the request field at fault.
func (e *Error) WithParam(p string) *Error { e.Param = p; return e }

// TypeFor gives the OpenAI error type that goes with an HTTP status.
func TypeFor(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusPaymentRequired:
		return "insufficient_quota"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusRequestEntityTooLarge, status >= 400 && status < 500:
		return "invalid_request_error"
	default:
		return "api_error"
	}
}

// Write sends e as the response. It must be called before anything else is written.
func Write(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	for k, v := range e.Headers {
		h.Set(k, v)
	}
	if e.RetryAfter > 0 {
		secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	w.WriteHeader(e.Status)
	b, _ := json.Marshal(struct {
		Error *Error `json:"error"`
	}{e})
	_, _ = w.Write(append(b, '\n'))
}

// From returns err as an *Error when it is one (possibly wrapped), else a
// generic 500 whose message does not repeat err (it may carry internals).
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return New(http.StatusInternalServerError, "internal_error", "internal gateway error")
}
