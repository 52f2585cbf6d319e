package classify

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"testing"
)

type devLine struct {
	ID       string          `json:"id"`
	Category string          `json:"category"`
	Request  json.RawMessage `json:"request"`
	Needs    []string        `json:"needs"`
}

func loadDev(t testing.TB) []devLine {
	f, err := os.Open("../../shared/routing/dev.jsonl")
	if err != nil {
		t.Skipf("no labelled set: %v", err)
	}
	defer f.Close()
	var out []devLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var d devLine
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// TestAccuracyOnDevSet runs the classifier over the labelled set: it fails
// below 80% and prints precision and recall per category.
func TestAccuracyOnDevSet(t *testing.T) {
	lines := loadDev(t)
	type pr struct{ tp, fp, fn int }
	stats := map[string]*pr{}
	for _, c := range All {
		stats[c] = &pr{}
	}
	right := 0
	for _, d := range lines {
		got := Classify(MessagesOf(d.Request)).Category
		if got == d.Category {
			right++
			stats[got].tp++
		} else {
			stats[got].fp++
			stats[d.Category].fn++
			t.Logf("miss %s: want %s got %s", d.ID, d.Category, got)
		}
	}
	acc := float64(right) / float64(len(lines))
	names := append([]string(nil), All...)
	sort.Strings(names)
	for _, c := range names {
		s := stats[c]
		p := float64(s.tp) / float64(max(1, s.tp+s.fp))
		r := float64(s.tp) / float64(max(1, s.tp+s.fn))
		fmt.Printf("classify: %-10s precision %.2f recall %.2f\n", c, p, r)
	}
	fmt.Printf("classify: accuracy %.1f%% (%d/%d)\n", 100*acc, right, len(lines))
	if acc < 0.80 {
		t.Fatalf("accuracy %.1f%% is below 80%%", 100*acc)
	}
}
