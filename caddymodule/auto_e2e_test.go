package caddymodule_test

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/llmgate/llmgate/fakeprovider"
)

func autoConfig(fURL, tierModels string) string {
	return `{
	llm {
		storage sqlite {DB}
		no_builtin_catalog
		no_default_tiers
		default_tier t
		tier t {
			` + tierModels + `
		}
		provider p {
			base_url ` + fURL + `
		}
		model small-text {
			serve p
			price 0.10 0.40
			context 8000
			capabilities tools json streaming
		}
		model big-vision {
			serve p
			price 2.50 10.00
			context 128000
			capabilities vision tools json streaming
		}
		model coder {
			serve p
			price 1.00 4.00
			context 32000
			capabilities tools json streaming
		}
		model no-tools {
			serve p
			price 0.05 0.05
			context 8000
			capabilities json streaming
		}
		auto {
			category coding {
				models coder big-vision
				temperature 0.2
			}
			category chat {
				models no-tools small-text big-vision
			}
			category summarize {
				models small-text big-vision
			}
			category extract {
				models no-tools small-text big-vision
			}
			category math {
				models no-tools small-text big-vision
			}
			category translate {
				models small-text big-vision
			}
			category creative {
				models big-vision small-text
			}
			group coding {
				category coding
			}
		}
	}
}
http://127.0.0.1:{PORT} {
	route /v1/* {
		llm_auth {
			admin_key ` + testAdminKey + `
		}
		uri strip_prefix /v1
		llm_api
		llm_router
		llm_upstream
	}
}`
}

func TestAutoRouting(t *testing.T) {
	p, fURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, autoConfig(fURL, ""))

	// A coding request goes to the coding model, with its temperature default.
	resp, body := g.post(t, "/v1/chat/completions", `{"model":"auto","messages":[{"role":"user","content":"Fix this Go function, it panics on empty input:\n\n`+"```go\\nfunc first(s []int) int { return s[0] }\\n```"+`"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-LLM-Model") != "coder" || !strings.Contains(resp.Header.Get("X-LLM-Route"), "category=coding") {
		t.Fatalf("%d %s %v", resp.StatusCode, body, resp.Header)
	}
	if got := p.Received()[0]; got.Model != "coder" || gjson.GetBytes(got.Body, "temperature").Float() != 0.2 {
		t.Fatalf("upstream got %s", got.Body)
	}
	// A temperature the client set is kept.
	g.post(t, "/v1/chat/completions", `{"model":"coding","temperature":0.7,"messages":[{"role":"user","content":"hello"}]}`)
	if got := p.Received()[1]; gjson.GetBytes(got.Body, "temperature").Float() != 0.7 || got.Model != "coder" {
		t.Fatalf("pinned group: %s", got.Body)
	}
	// An image needs vision: the chat category's first models lack it.
	resp, body = g.post(t, "/v1/chat/completions", `{"model":"auto","messages":[{"role":"user","content":[{"type":"text","text":"What bird is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-LLM-Model") != "big-vision" {
		t.Fatalf("vision: %d %s %s", resp.StatusCode, resp.Header.Get("X-LLM-Model"), body)
	}
	// Tools rule out no-tools.
	resp, _ = g.post(t, "/v1/chat/completions", `{"model":"auto","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"Do I need an umbrella in Lisbon tomorrow?"}]}`)
	if resp.Header.Get("X-LLM-Model") != "small-text" {
		t.Fatalf("tools: %s", resp.Header.Get("X-LLM-Model"))
	}
	// Too long for the small models: a larger context window.
	long := strings.Repeat("The committee met again and discussed the budget at length. ", 700) // ~42 KB ≈ 10k tokens
	resp, body = g.post(t, "/v1/chat/completions", `{"model":"auto","messages":[{"role":"user","content":"Summarize this:\n\n`+long+`"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-LLM-Model") != "big-vision" {
		t.Fatalf("context fallback: %d %s", resp.StatusCode, body)
	}
	// Too long for every model: 400.
	huge := strings.Repeat(long, 14) // ~590 KB ≈ 147k tokens
	resp, body = g.post(t, "/v1/chat/completions", `{"model":"auto","messages":[{"role":"user","content":"Summarize this:\n\n`+huge+`"}]}`)
	if resp.StatusCode != 400 || errCode(t, body) != "context_length_exceeded" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// An explicit model that cannot hold the request: 400, not a silent truncation.
	resp, body = g.post(t, "/v1/chat/completions", `{"model":"small-text","messages":[{"role":"user","content":"`+long+`"}]}`)
	if resp.StatusCode != 400 || errCode(t, body) != "context_length_exceeded" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}

	// The decision without a provider call, with reasons and the saving.
	before := p.Count()
	resp, body = g.post(t, "/v1/models/select", `{"model":"auto:cheap","messages":[{"role":"user","content":[{"type":"text","text":"Extract the totals from this receipt as JSON."},{"type":"image_url","image_url":{"url":"data:,"}}]}]}`)
	var d struct {
		Model, Category, Policy string
		Needs                   []string
		Excluded                []struct{ Model, Reason string }
		Saving                  *int64 `json:"saving_vs_most_expensive_micros"`
		TokenEstimate           int64  `json:"token_estimate"`
		MaxCost                 int64  `json:"estimated_max_cost_micros"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if d.Model != "big-vision" || d.Category != "extract" || d.Policy != "cost" || !slices.Contains(d.Needs, "vision") || len(d.Excluded) < 2 || d.Saving == nil || d.TokenEstimate == 0 || d.MaxCost == 0 {
		t.Fatalf("decision %s", body)
	}
	if p.Count() != before {
		t.Fatal("/models/select called a provider")
	}
}

func TestAutoRoutingTierDenies(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, autoConfig(fURL, "models small-text no-tools"))
	resp, body := g.post(t, "/v1/chat/completions", `{"model":"auto","messages":[{"role":"user","content":[{"type":"text","text":"What is in this photo?"},{"type":"image_url","image_url":{"url":"data:,"}}]}]}`)
	if resp.StatusCode != 403 || errCode(t, body) != "model_not_allowed" || !strings.Contains(body, "small-text") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// The labelled lines with needs route to a capable model every time.
func TestDevSetNeedsAlwaysRouteToCapableModels(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, autoConfig(fURL, ""))
	f, err := os.Open("../../shared/routing/dev.jsonl")
	if err != nil {
		t.Skip("no labelled set")
	}
	defer f.Close()
	caps := map[string][]string{"small-text": {"tools", "json"}, "big-vision": {"vision", "tools", "json"}, "coder": {"tools", "json"}, "no-tools": {"json"}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		var line struct {
			ID      string
			Needs   []string
			Request json.RawMessage
		}
		_ = json.Unmarshal(sc.Bytes(), &line)
		if len(line.Needs) == 0 {
			continue
		}
		n++
		for _, group := range []string{"auto", "auto:cheap", "auto:fast"} {
			req := strings.Replace(string(line.Request), `"model": "auto"`, `"model": "`+group+`"`, 1)
			resp, body := g.post(t, "/v1/models/select", req)
			model := gjson.Get(body, "model").Str
			for _, need := range line.Needs {
				if resp.StatusCode != 200 || !slices.Contains(caps[model], need) {
					t.Errorf("%s via %s: %s lacks %s (%s)", line.ID, group, model, need, body)
				}
			}
		}
	}
	if n != 6 {
		t.Fatalf("%d lines with needs", n)
	}
}

// classifier llm: the model's answer decides; a slow model falls back to the
// local classifier in time; answers are cached.
func TestLLMClassifier(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{})
	cls, cURL := fake(t, fakeprovider.Config{Reply: "translate"})
	cf := strings.Replace(autoConfig(fURL, ""), "\t\tauto {\n", "\t\tauto {\n\t\t\tclassifier llm classifier-model 300ms\n", 1)
	cf = strings.Replace(cf, "\t\tmodel small-text {", "\t\tprovider c {\n\t\t\tbase_url "+cURL+"\n\t\t}\n\t\tmodel classifier-model {\n\t\t\tserve c\n\t\t\tprice 0 0\n\t\t}\n\t\tmodel small-text {", 1)
	g := startGateway(t, cf)
	sel := func(text string) (string, string) {
		_, body := g.post(t, "/v1/models/select", `{"model":"auto","messages":[{"role":"user","content":"`+text+`"}]}`)
		return gjson.Get(body, "category").Str, gjson.Get(body, "classifier").Str
	}
	if c, how := sel("hello there, how are you?"); c != "translate" || how != "llm" {
		t.Fatalf("%s by %s", c, how)
	}
	if c, _ := sel("hello there, how are you?"); c != "translate" || cls.Count() != 1 {
		t.Fatalf("not cached: %d calls", cls.Count())
	}
	cls.Set(fakeprovider.Config{Reply: "translate", Latency: 2 * time.Second})
	start := time.Now()
	c, how := sel("why is the sky blue?")
	if c != "chat" || !strings.HasPrefix(how, "local") || time.Since(start) > time.Second {
		t.Fatalf("%s by %s after %v", c, how, time.Since(start))
	}
	cls.Set(fakeprovider.Config{Reply: "no idea, sorry"})
	if c, how := sel("write a haiku about rain"); c != "creative" || !strings.HasPrefix(how, "local") {
		t.Fatalf("%s by %s", c, how)
	}
}

// A group delegated to an external router (WilmerAI): the request goes as
// it is, and billing follows the model the router's answer names.
func TestDelegatedGroupBillsTheModelThatAnswered(t *testing.T) {
	_, fURL := fake(t, fakeprovider.Config{})
	w, wURL := fake(t, fakeprovider.Config{AnswerModel: "coder", PromptTokens: 10, CompletionTokens: 20})
	cf := autoConfig(fURL, "")
	cf = strings.Replace(cf, "\t\tmodel small-text {", "\t\tprovider wilmer {\n\t\t\tbase_url "+wURL+"\n\t\t}\n\t\tmodel small-text {", 1)
	cf = strings.Replace(cf, "\t\t\tgroup coding {", "\t\t\tgroup wilmer {\n\t\t\t\tdelegate wilmer\n\t\t\t}\n\t\t\tgroup coding {", 1)
	cf = strings.Replace(cf, "\t\tllm_router\n", "\t\tllm_router\n\t\tllm_credits\n", 1)
	g := startGateway(t, cf)
	addCredits(t, g, "admin", 1_000_000, "seed")
	resp, body := g.post(t, "/v1/chat/completions", `{"model":"wilmer","messages":[{"role":"user","content":"route me"}]}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-LLM-Provider") != "wilmer" {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if w.Received()[0].Model != "wilmer" {
		t.Fatalf("the router got model %q", w.Received()[0].Model)
	}
	// coder: 1.00 in, 4.00 out per 1M → 10·1 + 20·4 = 90 micro-credits.
	if resp.Header.Get("X-LLM-Cost-Micros") != "90" {
		t.Fatalf("cost %s", resp.Header.Get("X-LLM-Cost-Micros"))
	}
}
