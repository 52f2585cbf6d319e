package catalog

import "testing"

func TestParseMicros(t *testing.T) {
	good := map[string]int64{"2.50": 2_500_000, "0.15": 150_000, "10": 10_000_000, ".5": 500_000, "0.000001": 1, "75.00": 75_000_000}
	for in, want := range good {
		got, err := ParseMicros(in)
		if err != nil || got != want {
			t.Errorf("ParseMicros(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.0000001", "1e3", "abc", "1.2.3", "99999999999999"} {
		if _, err := ParseMicros(in); err == nil {
			t.Errorf("ParseMicros(%q) accepted", in)
		}
	}
	if FormatMicros(2_500_000) != "2.5" || FormatMicros(1) != "0.000001" || FormatMicros(-3_000_000) != "-3" {
		t.Fatal(FormatMicros(2_500_000), FormatMicros(1))
	}
}

func TestBuiltinIsValidAndPriced(t *testing.T) {
	ms := Builtin()
	if len(ms) < 20 {
		t.Fatalf("builtin catalog has %d models", len(ms))
	}
	for _, m := range ms {
		if err := m.Validate(); err != nil {
			t.Error(err)
		}
		if m.InputMicrosPerMTok <= 0 || m.ContextWindow <= 0 {
			t.Errorf("%s lacks price or context window", m.ID)
		}
	}
}

func TestMergeAndResolve(t *testing.T) {
	base := []Model{{ID: "gpt-4o", Aliases: []string{"gpt4o"}, Serve: []Serve{{Provider: "openai"}}, InputMicrosPerMTok: 2_500_000, ContextWindow: 128000}}
	over := []Model{
		{ID: "gpt-4o", InputMicrosPerMTok: 3_000_000, Serve: []Serve{{Provider: "litellm", Upstream: "openai/gpt-4o", Priority: 5}}},
		{ID: "local", Serve: []Serve{{Provider: "ollama"}}},
	}
	c, err := New(Merge(base, over), map[string]int{"openai": 1, "litellm": 10, "groq": 3}, []string{"groq"})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := c.Lookup("gpt4o")
	if !ok || m.ID != "gpt-4o" || m.InputMicrosPerMTok != 3_000_000 || m.ContextWindow != 128000 {
		t.Fatalf("%+v", m)
	}
	want := []Serve{{"openai", "gpt-4o", 1}, {"groq", "gpt-4o", 3}, {"litellm", "openai/gpt-4o", 5}}
	if len(m.Serve) != 3 {
		t.Fatalf("serve %+v", m.Serve)
	}
	for i := range want {
		if m.Serve[i] != want[i] {
			t.Fatalf("serve[%d] = %+v, want %+v", i, m.Serve[i], want[i])
		}
	}
	// "local" is served by an unconfigured provider, but the catch-all serves it.
	if l, _ := c.Lookup("local"); len(l.Serve) != 1 || l.Serve[0].Provider != "groq" {
		t.Fatalf("local %+v", l)
	}
	if len(c.Served()) != 2 {
		t.Fatal(len(c.Served()))
	}
	if _, err := New([]Model{{ID: "a", Aliases: []string{"x"}}, {ID: "b", Aliases: []string{"x"}}}, nil, nil); err == nil {
		t.Fatal("duplicate alias accepted")
	}
	if _, err := New([]Model{{ID: "a", Capabilities: []string{"telepathy"}}}, nil, nil); err == nil {
		t.Fatal("unknown capability accepted")
	}
}
