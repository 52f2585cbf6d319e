package fakeprovider

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
)

// Lago is a fake of Lago's events API (POST /api/v1/events/batch). It checks
// each event's shape, answers 503 while Down, and keeps the events by
// transaction id, as Lago deduplicates them.
type Lago struct {
	Key  string // the bearer key it accepts
	Down atomic.Bool

	mu       sync.Mutex
	events   map[string]json.RawMessage
	calls    int
	rejected int
}

// Event is the part of a Lago event the fake checks.
type LagoEvent struct {
	TransactionID          string         `json:"transaction_id"`
	ExternalSubscriptionID string         `json:"external_subscription_id"`
	Code                   string         `json:"code"`
	Timestamp              int64          `json:"timestamp"`
	Properties             map[string]any `json:"properties"`
}

func (l *Lago) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.calls++
	l.mu.Unlock()
	if l.Down.Load() {
		http.Error(w, `{"status":503,"error":"Service Unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/events/batch" || r.Header.Get("Authorization") != "Bearer "+l.Key {
		http.Error(w, `{"status":401}`, http.StatusUnauthorized)
		return
	}
	var body struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Events) == 0 || len(body.Events) > 100 {
		l.reject(w)
		return
	}
	for _, raw := range body.Events {
		var e LagoEvent
		if json.Unmarshal(raw, &e) != nil || e.TransactionID == "" || e.ExternalSubscriptionID == "" || e.Code == "" || e.Timestamp == 0 {
			l.reject(w)
			return
		}
	}
	l.mu.Lock()
	if l.events == nil {
		l.events = map[string]json.RawMessage{}
	}
	for _, raw := range body.Events {
		var e LagoEvent
		_ = json.Unmarshal(raw, &e)
		l.events[e.TransactionID] = raw
	}
	l.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (l *Lago) reject(w http.ResponseWriter) {
	l.mu.Lock()
	l.rejected++
	l.mu.Unlock()
	http.Error(w, `{"status":422,"error":"Unprocessable Entity"}`, http.StatusUnprocessableEntity)
}

// Events returns the events received, by transaction id.
func (l *Lago) Events() map[string]LagoEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]LagoEvent, len(l.events))
	for id, raw := range l.events {
		var e LagoEvent
		_ = json.Unmarshal(raw, &e)
		out[id] = e
	}
	return out
}

// Calls counts requests, Rejected the malformed ones.
func (l *Lago) Calls() (calls, rejected int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls, l.rejected
}
