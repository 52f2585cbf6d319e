package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/storage"
)

// LagoConfig sends every settled usage record to Lago's events API.
type LagoConfig struct {
	// APIURL is Lago's base URL, e.g. {env.LAGO_API_URL}.
	APIURL string `json:"api_url,omitempty"`
	// APIKey, e.g. {env.LAGO_API_KEY}.
	APIKey string `json:"api_key,omitempty"`
	// MetricCode is the billable metric's code (default llm_usage).
	MetricCode string `json:"metric_code,omitempty"`
	// BatchSize events per call (default 100, at most 100).
	BatchSize int `json:"batch_size,omitempty"`
	// Interval between drains (default 5s); failures back off to 5m.
	Interval caddy.Duration `json:"interval,omitempty"`
}

const lagoTopic = "lago"

// lagoEvent is one event of Lago's POST /api/v1/events/batch.
type lagoEvent struct {
	TransactionID          string         `json:"transaction_id"`
	ExternalSubscriptionID string         `json:"external_subscription_id"`
	Code                   string         `json:"code"`
	Timestamp              int64          `json:"timestamp"`
	Properties             map[string]any `json:"properties"`
}

// lagoMessage is the outbox entry for one settled request, or nil when
// Lago is not configured.
func (a *App) lagoMessage(requestID string, u storage.Usage, cost int64) *storage.OutboxMessage {
	if a.lago == nil {
		return nil
	}
	b, _ := json.Marshal(lagoEvent{
		TransactionID: requestID, ExternalSubscriptionID: u.User, Code: a.lago.MetricCode, Timestamp: u.CreatedAt.Unix(),
		Properties: map[string]any{"model": u.Model, "provider": u.Provider, "tokens_in": u.TokensIn, "tokens_out": u.TokensOut,
			"cost_micros": cost, "byok": u.BYOK, "estimated": u.Estimated},
	})
	return &storage.OutboxMessage{Topic: lagoTopic, Key: requestID, Payload: b}
}

func (a *App) provisionLago(repl *caddy.Replacer) error {
	lc := a.Lago
	if lc == nil {
		return nil
	}
	c := *lc
	c.APIURL = strings.TrimRight(strings.TrimSpace(repl.ReplaceKnown(lc.APIURL, "")), "/")
	c.APIKey = strings.TrimSpace(repl.ReplaceKnown(lc.APIKey, ""))
	if c.APIURL == "" || c.APIKey == "" {
		a.logger.Info("Lago metering off: api_url or api_key is empty")
		return nil
	}
	if !strings.HasPrefix(c.APIURL, "http://") && !strings.HasPrefix(c.APIURL, "https://") {
		return fmt.Errorf("lago api_url must be an http(s) URL")
	}
	if c.MetricCode == "" {
		c.MetricCode = "llm_usage"
	}
	if c.BatchSize <= 0 || c.BatchSize > 100 {
		c.BatchSize = 100
	}
	if c.Interval <= 0 {
		c.Interval = caddy.Duration(5 * time.Second)
	}
	a.lago = &c
	return nil
}

// lagoDrainer delivers the outbox to Lago: batches with the events' own
// transaction ids (so a retried event is the same event to Lago), backing
// off while Lago fails; nothing leaves the outbox unsent. next is the wait
// before the following round.
type lagoDrainer struct {
	a      *App
	client *http.Client
	wait   time.Duration
}

func (l *lagoDrainer) next() time.Duration { return l.wait }

func (l *lagoDrainer) round(ctx context.Context) {
	a, base := l.a, time.Duration(l.a.lago.Interval)
	sent, err := a.lagoRound(ctx, l.client)
	switch {
	case err != nil:
		l.wait = min(max(l.wait, base)*2, 5*time.Minute)
		if ctx.Err() == nil {
			a.logger.Warn("Lago delivery failed; will retry", zap.String("error", err.Error()), zap.Duration("retry_in", l.wait))
		}
	case sent > 0:
		l.wait = 0 // more may be waiting
	default:
		l.wait = base
	}
	if d, err := a.store.OutboxDepth(ctx, lagoTopic); err == nil {
		a.metrics.outbox.Set(float64(d))
	}
}

func (a *App) lagoRound(ctx context.Context, client *http.Client) (sent int, err error) {
	if !a.storeState.ready.Load() {
		return 0, nil
	}
	msgs, err := a.store.ClaimOutbox(ctx, lagoTopic, a.lago.BatchSize, time.Minute, time.Now())
	if err != nil || len(msgs) == 0 {
		return 0, err
	}
	events := make([]json.RawMessage, len(msgs))
	ids := make([]int64, len(msgs))
	for i, m := range msgs {
		events[i], ids[i] = m.Payload, m.ID
	}
	body, _ := json.Marshal(map[string]any{"events": events})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.lago.APIURL+"/api/v1/events/batch", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.lago.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = fmt.Errorf("lago answered %d", resp.StatusCode)
		}
	} else {
		err = fmt.Errorf("lago unreachable: %s", describeErr(err))
	}
	if err != nil {
		// Back in the queue for the next try, with the same transaction ids.
		_ = a.store.UnclaimOutbox(context.WithoutCancel(ctx), ids)
		return 0, err
	}
	return len(msgs), a.store.AckOutbox(ctx, ids, time.Now())
}
