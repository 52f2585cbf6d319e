package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/llmgate/llmgate/classify"
)

// classifierPrompt asks a model for the category only, as WilmerAI does.
const classifierPrompt = "You route requests. Read the conversation and answer with exactly one word, the category of the LAST user message: %s. No other words."

// classifyLLM asks the configured classifier model for the category, with a
// timeout, caching answers by a hash of the prompt. It reports false when
// the model could not answer in time or answered something else; the caller
// then uses the local classifier.
func (a *App) classifyLLM(ctx context.Context, msgs []classify.Message) (string, bool) {
	ac := a.Auto
	m, ok := a.catalog.Lookup(ac.Classifier.Model)
	if !ok || len(m.Serve) == 0 {
		return "", false
	}
	cats := make([]string, 0, len(a.categories))
	for c := range a.categories {
		cats = append(cats, c)
	}
	slices.Sort(cats)
	var convo strings.Builder
	for _, msg := range msgs[max(0, len(msgs)-4):] {
		text := msg.Text
		if len(text) > 2000 {
			text = text[:2000]
		}
		convo.WriteString(msg.Role + ": " + text + "\n")
	}
	sys := strings.Replace(classifierPrompt, "%s", strings.Join(cats, ", "), 1)
	sum := sha256.Sum256([]byte(sys + "\x00" + convo.String()))
	key := "cls:" + hex.EncodeToString(sum[:16])
	if v, ok := a.cache.Get(ctx, key); ok {
		return string(v), true
	}
	s := m.Serve[0]
	p := a.providers[s.Provider]
	if p == nil {
		return "", false
	}
	body, _ := json.Marshal(map[string]any{"model": s.Upstream, "temperature": 0, "max_tokens": 8,
		"messages": []map[string]string{{"role": "system", "content": sys}, {"role": "user", "content": convo.String()}}})
	timeout := time.Duration(ac.Classifier.Timeout)
	if timeout <= 0 {
		timeout = 1500 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, d := range p.deployments {
		if !d.Health.Available(time.Now()) {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/chat/completions", bytes.NewReader(body))
		if err != nil {
			return "", false
		}
		req.Header.Set("Content-Type", "application/json")
		if p.key != "" {
			req.Header.Set("Authorization", "Bearer "+p.key)
		}
		resp, err := p.transport.RoundTrip(req)
		if err != nil {
			return "", false
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", false
		}
		answer := strings.ToLower(strings.Trim(strings.TrimSpace(gjson.GetBytes(b, "choices.0.message.content").Str), ".\"'`*"))
		if _, known := a.categories[answer]; !known {
			return "", false
		}
		a.cache.Set(ctx, key, []byte(answer), time.Hour)
		return answer, true
	}
	return "", false
}
