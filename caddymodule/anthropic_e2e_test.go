package caddymodule_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	anthropicsdk "github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"

	"github.com/llmgate/llmgate/fakeprovider"
)

func anthropicConfig(aURL, oURL string) string {
	return `{
	llm {
		storage sqlite {DB}
		no_builtin_catalog
		no_default_tiers
		default_tier t
		tier t {
			allowance 0
		}
		provider anth {
			api anthropic
			base_url ` + aURL + `
			api_key sk-ant-test-0123456789
			priority 1
		}
		provider backup {
			base_url ` + oURL + `
			api_key sk-backup-0123456789
			priority 2
		}
		model claude-x {
			serve anth claude-x-upstream
			serve backup
			price 3.00 15.00
			cache_price 0.30 3.75
			context 200000
			max_output 1024
			capabilities vision tools json streaming
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
		llm_credits
		llm_upstream
	}
}`
}

func TestOpenAIClientToAnthropicProvider(t *testing.T) {
	a, aURL := fake(t, fakeprovider.Config{CompletionTokens: 50, PromptTokens: 100, CacheRead: 1000, CacheWrite: 200})
	b, bURL := fake(t, fakeprovider.Config{})
	g := startGateway(t, anthropicConfig(aURL, bURL))
	addCredits(t, g, "admin", 10_000_000, "seed")
	c := g.client()
	ctx := context.Background()

	params := chatParams("claude-x")
	params.Messages = append([]openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief.")}, params.Messages...)
	var raw *http.Response
	resp, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&raw))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Choices[0].Message.Content, "t0 t1 ") || resp.Choices[0].FinishReason != "stop" {
		t.Fatalf("%+v", resp.Choices[0])
	}
	// Prompt tokens count cached ones, as OpenAI does.
	if resp.Usage.PromptTokens != 1300 || resp.Usage.CompletionTokens != 50 || resp.Usage.PromptTokensDetails.CachedTokens != 1000 {
		t.Fatalf("usage %+v", resp.Usage)
	}
	got := a.Received()[0]
	if got.Path != "/v1/messages" || got.Model != "claude-x-upstream" || got.Header.Get("X-Api-Key") != "sk-ant-test-0123456789" ||
		got.Header.Get("Authorization") != "" || got.Header.Get("Anthropic-Version") == "" {
		t.Fatalf("upstream request %s %v", got.Path, got.Header)
	}
	if gjson.GetBytes(got.Body, "system").Str != "Be brief." || gjson.GetBytes(got.Body, "max_tokens").Int() != 1024 {
		t.Fatalf("translated body %s", got.Body)
	}
	// Every token kind priced: 100·3 + 1000·0.30 + 200·3.75 + 50·15 = 2100 micro-credits.
	if raw.Header.Get("X-LLM-Cost-Micros") != "2100" {
		t.Fatalf("cost %s", raw.Header.Get("X-LLM-Cost-Micros"))
	}

	// Streamed, without include_usage: text arrives, the usage chunk does not, billing is exact.
	stream := c.Chat.Completions.NewStreaming(ctx, chatParams("claude-x"))
	var text strings.Builder
	sawUsage := false
	for stream.Next() {
		ch := stream.Current()
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
		sawUsage = sawUsage || ch.Usage.TotalTokens > 0
	}
	if stream.Err() != nil || !strings.HasPrefix(text.String(), "t0 t1 ") || sawUsage {
		t.Fatalf("%q usage=%v %v", text.String(), sawUsage, stream.Err())
	}
	_, body := g.get(t, "/v1/usage?limit=1")
	if gjson.Get(body, "data.0.cost_micros").Int() != 2100 || gjson.Get(body, "data.0.estimated").Bool() {
		t.Fatalf("stream billing %s", body)
	}
	// With include_usage the client gets it.
	p := chatParams("claude-x")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream = c.Chat.Completions.NewStreaming(ctx, p)
	var usage int64
	for stream.Next() {
		usage = max(usage, stream.Current().Usage.PromptTokens)
	}
	if usage != 1300 {
		t.Fatalf("usage chunk %d", usage)
	}

	// What Anthropic cannot do is a 400 naming it, not silence.
	_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude-x", N: openai.Int(2),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "n" {
		t.Fatalf("%v", err)
	}

	// A failing Anthropic provider fails over to the OpenAI-style backup.
	a.Set(fakeprovider.Config{Fault: fakeprovider.Fail500})
	if _, err := c.Chat.Completions.New(ctx, chatParams("claude-x"), option.WithResponseInto(&raw)); err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get("X-LLM-Provider") != "backup" || b.Count() != 1 {
		t.Fatalf("no failover: %s", raw.Header.Get("X-LLM-Provider"))
	}
}

// The Anthropic SDK at POST /v1/messages: passed through to an Anthropic
// provider, translated for an OpenAI-style one, streamed both ways, billed.
func TestAnthropicClientToAnyProvider(t *testing.T) {
	a, aURL := fake(t, fakeprovider.Config{CompletionTokens: 6, PromptTokens: 40, CacheRead: 400})
	o, oURL := fake(t, fakeprovider.Config{CompletionTokens: 5, PromptTokens: 30})
	g := startGateway(t, anthropicConfig(aURL, oURL))
	addCredits(t, g, "admin", 10_000_000, "seed")
	c := anthropicsdk.NewClient(aoption.WithBaseURL(g.base+"/"), aoption.WithAPIKey(testAdminKey), aoption.WithMaxRetries(0))
	ctx := context.Background()
	params := anthropicsdk.MessageNewParams{Model: "claude-x", MaxTokens: 100,
		System:   []anthropicsdk.TextBlockParam{{Text: "Be brief."}},
		Messages: []anthropicsdk.MessageParam{anthropicsdk.NewUserMessage(anthropicsdk.NewTextBlock("hello"))}}

	// Anthropic in, Anthropic provider: passed through.
	msg, err := c.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Content[0].Text != "t0 t1 t2 t3 t4 t5 " || msg.Usage.OutputTokens != 6 || msg.Usage.CacheReadInputTokens != 400 {
		t.Fatalf("%+v", msg)
	}
	got := a.Received()[0]
	if got.Model != "claude-x-upstream" || gjson.GetBytes(got.Body, "system.0.text").Str != "Be brief." || got.Header.Get("X-Api-Key") != "sk-ant-test-0123456789" {
		t.Fatalf("passed-through body %s", got.Body)
	}
	// 40·3 + 400·0.30 + 6·15 = 120 + 120 + 90 = 330 micro-credits.
	_, body := g.get(t, "/v1/usage?limit=1")
	if gjson.Get(body, "data.0.cost_micros").Int() != 330 {
		t.Fatalf("billing %s", body)
	}

	// Streamed pass-through.
	stream := c.Messages.NewStreaming(ctx, params)
	var acc anthropicsdk.Message
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if stream.Err() != nil || acc.Content[0].Text != "t0 t1 t2 t3 t4 t5 " || acc.Usage.OutputTokens != 6 {
		t.Fatalf("%v %+v", stream.Err(), acc)
	}
	_, body = g.get(t, "/v1/usage?limit=1")
	if gjson.Get(body, "data.0.cost_micros").Int() != 330 || gjson.Get(body, "data.0.estimated").Bool() {
		t.Fatalf("stream billing %s", body)
	}

	// The Anthropic provider down: the OpenAI-style backup answers, translated
	// both ways, plain and streamed.
	a.Set(fakeprovider.Config{Fault: fakeprovider.Fail500})
	msg, err = c.Messages.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Content[0].Text != "t0 t1 t2 t3 t4 " || msg.Usage.InputTokens != 30 || msg.Usage.OutputTokens != 5 || msg.StopReason != "end_turn" {
		t.Fatalf("translated %+v", msg)
	}
	ob := o.Received()[0].Body
	if gjson.GetBytes(ob, "messages.0.role").Str != "system" || gjson.GetBytes(ob, "max_tokens").Int() != 100 {
		t.Fatalf("translated request %s", ob)
	}
	stream = c.Messages.NewStreaming(ctx, params)
	acc = anthropicsdk.Message{}
	for stream.Next() {
		if err := acc.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if stream.Err() != nil || acc.Content[0].Text != "t0 t1 t2 t3 t4 " || acc.Usage.OutputTokens != 5 {
		t.Fatalf("translated stream: %v %+v", stream.Err(), acc)
	}
	// 30·3 + 5·15 = 165 micro-credits, from the translated usage.
	_, body = g.get(t, "/v1/usage?limit=1")
	if gjson.Get(body, "data.0.cost_micros").Int() != 165 || gjson.Get(body, "data.0.provider").Str != "backup" {
		t.Fatalf("translated billing %s", body)
	}
}
