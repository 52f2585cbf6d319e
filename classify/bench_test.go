package classify

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkClassify2KB classifies a conversation of about 2 KB.
// go test ./classify -run X -bench . (p99 comes from the latency test below)
func BenchmarkClassify2KB(b *testing.B) {
	msgs := conversation2KB()
	b.ReportAllocs()
	for b.Loop() {
		_ = Classify(msgs)
	}
}

func conversation2KB() []Message {
	return []Message{
		{"system", "You are a helpful assistant for a software company."},
		{"user", "Our deploy failed last night and the on-call notes are a mess."},
		{"assistant", strings.Repeat("Here is what I found in the logs and what it probably means. ", 12)},
		{"user", "Can you summarize the incident for the exec team in three sentences?\n\n" + strings.Repeat("At 02:14 the payment service started returning errors after the config change rolled out. ", 12)},
	}
}

func FuzzClassify(f *testing.F) {
	f.Add("Translate this into French: hello", "")
	f.Add("```go\nfunc main() {}\n```", "fix it")
	f.Add("∫₀^∞ x·e^(−2x) dx", "")
	f.Add("`a(`", "`")
	f.Fuzz(func(t *testing.T, a, b string) {
		r := Classify([]Message{{"user", a}, {"assistant", b}, {"user", b + a}})
		found := false
		for _, c := range All {
			found = found || c == r.Category
		}
		if !found {
			t.Fatalf("unknown category %q", r.Category)
		}
	})
}

// BenchmarkClassify2KBLatency reports the 99th percentile of single calls.
func BenchmarkClassify2KBLatency(b *testing.B) {
	msgs := conversation2KB()
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		t := time.Now()
		_ = Classify(msgs)
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
}
