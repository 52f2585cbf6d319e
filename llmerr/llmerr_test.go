package llmerr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

func TestWriteShapeAndRetryAfter(t *testing.T) {
	rec := httptest.NewRecorder()
	e := New(503, "upstream_unavailable", "all providers down")
	e.RetryAfter = 1500 * time.Millisecond
	Write(rec, e)
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "2" {
		t.Fatalf("status %d retry-after %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	var body struct {
		Error struct{ Message, Type, Code string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error.Message != "all providers down" || body.Error.Type != "api_error" || body.Error.Code != "upstream_unavailable" {
		t.Fatalf("body %s", rec.Body.String())
	}
}

func TestFromHidesInternals(t *testing.T) {
	e := From(errors.New("dial tcp: password=hunter2"))
	if e.Status != 500 || e.Message != "internal gateway error" {
		t.Fatalf("%+v", e)
	}
	wrapped := fmt.Errorf("ctx: %w", New(413, "body_too_large", "too big"))
	if got := From(wrapped); got.Status != 413 || got.Type != "invalid_request_error" {
		t.Fatalf("%+v", got)
	}
}
