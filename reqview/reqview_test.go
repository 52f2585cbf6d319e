package reqview

import (
	"strings"
	"testing"
)

func TestEndpointFor(t *testing.T) {
	cases := map[string]Endpoint{
		"/v1/chat/completions": Chat, "/chat/completions": Chat, "/api/v1/litellm/completions": Completions,
		"/embeddings": Embeddings, "/v1/models": Unknown, "/": Unknown,
	}
	for p, want := range cases {
		if got := EndpointFor(p); got != want {
			t.Errorf("%s: %v want %v", p, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	v, err := Parse(Chat, []byte(`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"max_tokens":100,"max_completion_tokens":200,"n":2,
		"tools":[{"type":"function"}],"response_format":{"type":"json_object"},
		"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := View{Endpoint: Chat, Model: "gpt-4o", Stream: true, IncludeUsage: true, MaxTokens: 200, N: 2, HasImages: true, HasTools: true, JSONMode: true}
	if v != want {
		t.Fatalf("%+v", v)
	}
	if v, err := Parse(Embeddings, []byte(`{"model":"e","input":["a","b"]}`)); err != nil || v.Model != "e" {
		t.Fatal(err)
	}
}

func TestParseRefusals(t *testing.T) {
	cases := []struct {
		e          Endpoint
		body       string
		param, msg string
	}{
		{Chat, ``, "", "empty"},
		{Chat, `not json`, "", "not valid JSON"},
		{Chat, `[1]`, "", "JSON object"},
		{Chat, "{\"model\":\"\xff\"}", "", "UTF-8"},
		{Chat, `{"messages":[{"role":"user","content":"x"}]}`, "model", "model"},
		{Chat, `{"model":5,"messages":[{"role":"user","content":"x"}]}`, "model", "model"},
		{Chat, `{"model":"m"}`, "messages", "non-empty"},
		{Chat, `{"model":"m","messages":[]}`, "messages", "non-empty"},
		{Chat, `{"model":"m","messages":["hi"]}`, "messages", "role"},
		{Chat, `{"model":"m","messages":[{"role":"user"}],"stream":"yes"}`, "stream", "boolean"},
		{Chat, `{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}`, "max_tokens", "positive"},
		{Chat, `{"model":"m","messages":[{"role":"user"}],"max_tokens":1.5}`, "max_tokens", "positive"},
		{Chat, `{"model":"m","messages":[{"role":"user"}],"max_tokens":99999999999999}`, "max_tokens", "positive"},
		{Chat, `{"model":"m","messages":[{"role":"user"}],"n":1000}`, "n", "128"},
		{Completions, `{"model":"m"}`, "prompt", "prompt"},
		{Embeddings, `{"model":"m","input":"x","stream":true}`, "stream", "streamed"},
		{Chat, `{"model":"m","messages":[{"role":"user","content":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}]}`, "", "deeply"},
	}
	for _, c := range cases {
		_, err := Parse(c.e, []byte(c.body))
		if err == nil {
			t.Errorf("%q accepted", c.body)
			continue
		}
		if err.Status != 400 || err.Param != c.param || !strings.Contains(err.Message, c.msg) {
			t.Errorf("%q: %+v", c.body, err)
		}
	}
}

func TestDepthIgnoresBracketsInStrings(t *testing.T) {
	body := `{"model":"m","messages":[{"role":"user","content":"` + strings.Repeat("[{", 500) + `"}]}`
	if _, err := Parse(Chat, []byte(body)); err != nil {
		t.Fatal(err)
	}
}
