package anthropic

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/llmgate/llmgate/sse"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name (JSON compared as values).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := "testdata/" + name
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if strings.HasSuffix(name, ".json") {
		var a, b any
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal(want, &b)
		ga, _ := json.Marshal(a)
		gb, _ := json.Marshal(b)
		if !bytes.Equal(ga, gb) {
			t.Fatalf("%s differs:\ngot  %s\nwant %s", name, ga, gb)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\ngot\n%s\nwant\n%s", name, got, want)
	}
}

func pretty(b []byte) []byte {
	var v any
	_ = json.Unmarshal(b, &v)
	out, _ := json.MarshalIndent(v, "", "  ")
	return append(out, '\n')
}

func TestRequestGolden(t *testing.T) {
	in, _ := os.ReadFile("testdata/request_openai.json")
	out, err := FromOpenAI(in, "claude-sonnet-4-5-20250929", 4096)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "request_anthropic.json", pretty(out))
}

func TestResponseGolden(t *testing.T) {
	in, _ := os.ReadFile("testdata/response_anthropic.json")
	out, err := ToOpenAI(in)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "response_openai.json", pretty(out))
}

func translateStream(in []byte, includeUsage bool) []byte {
	s := NewStream(includeUsage)
	s.created = 1700000000
	r := sse.NewReader(bytes.NewReader(in), 1<<20)
	var out []byte
	for {
		ev, err := r.Next()
		if err != nil {
			return out
		}
		for _, o := range s.Event(string(ev.Name), ev.Data) {
			out = append(out, o...)
		}
	}
}

func TestStreamGolden(t *testing.T) {
	in, _ := os.ReadFile("testdata/stream_anthropic.txt")
	golden(t, "stream_openai.txt", translateStream(in, true))
	// Without include_usage there is no usage chunk.
	if bytes.Contains(translateStream(in, false), []byte(`"usage"`)) {
		t.Fatal("usage chunk sent unasked")
	}
}

func TestUnsupportedFieldsAreRefused(t *testing.T) {
	for _, body := range []string{
		`{"model":"c","messages":[{"role":"user","content":"x"}],"logprobs":true}`,
		`{"model":"c","messages":[{"role":"user","content":"x"}],"n":2}`,
		`{"model":"c","messages":[{"role":"user","content":"x"}],"presence_penalty":0.5}`,
		`{"model":"c","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`,
		`{"model":"c","messages":[{"role":"system","content":"only a system prompt"}]}`,
	} {
		if _, err := FromOpenAI([]byte(body), "c", 100); err == nil || err.Status != 400 || err.Param == "" {
			t.Errorf("%s: %v", body, err)
		}
	}
	// Consecutive user turns merge (Anthropic needs alternation); max_tokens defaults.
	out, err := FromOpenAI([]byte(`{"model":"c","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}`), "c", 777)
	if err != nil || !bytes.Contains(out, []byte(`"max_tokens":777`)) || bytes.Count(out, []byte(`"role":"user"`)) != 1 {
		t.Fatalf("%s %v", out, err)
	}
}

// FuzzStream: any event sequence translates without panicking, and what
// comes out is well-formed SSE data lines.
func FuzzStream(f *testing.F) {
	in, _ := os.ReadFile("testdata/stream_anthropic.txt")
	f.Add(in)
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"))
	f.Add([]byte("data: {\"type\":\"content_block_delta\",\"index\":7,\"delta\":{\"type\":\"input_json_delta\"}}\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, line := range bytes.Split(translateStream(in, true), []byte("\n\n")) {
			if len(line) > 0 && !bytes.HasPrefix(line, []byte("data: ")) {
				t.Fatalf("malformed output %q", line)
			}
		}
	})
}

func TestInboundRequestGolden(t *testing.T) {
	in, _ := os.ReadFile("testdata/inbound_anthropic.json")
	out, err := ToOpenAIRequest(in, "gpt-4o-2024-08-06")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "inbound_openai.json", pretty(out))
}

func TestInboundResponseGolden(t *testing.T) {
	in, _ := os.ReadFile("testdata/openai_response.json")
	out, err := FromOpenAIResponse(in)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "openai_response_as_anthropic.json", pretty(out))
}

func reverse(in []byte) []byte {
	s := NewReverseStream()
	r := sse.NewReader(bytes.NewReader(in), 1<<20)
	var out []byte
	for {
		ev, err := r.Next()
		if err != nil {
			return out
		}
		for _, o := range s.Event(string(ev.Name), ev.Data) {
			out = append(out, o...)
		}
	}
}

func TestInboundStreamGolden(t *testing.T) {
	in, _ := os.ReadFile("testdata/openai_stream.txt")
	golden(t, "openai_stream_as_anthropic.txt", reverse(in))
}

// FuzzReverseStream: any OpenAI event sequence becomes well-formed
// Anthropic events without panicking.
func FuzzReverseStream(f *testing.F) {
	in, _ := os.ReadFile("testdata/openai_stream.txt")
	f.Add(in)
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":3,\"function\":{\"arguments\":\"{\"}}]}}]}\n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, ev := range bytes.Split(reverse(in), []byte("\n\n")) {
			if len(ev) > 0 && !bytes.HasPrefix(ev, []byte("event: ")) {
				t.Fatalf("malformed %q", ev)
			}
		}
	})
}
