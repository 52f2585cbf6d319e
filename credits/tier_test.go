package credits

import (
	"testing"
	"time"
)

func TestPeriods(t *testing.T) {
	m := Tier{Name: "m"}
	s, e := m.PeriodOf(time.Date(2026, 2, 28, 23, 59, 0, 0, time.UTC))
	if !s.Equal(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) || !e.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatal(s, e)
	}
	d := Tier{Name: "d", Period: "24h"}
	s, e = d.PeriodOf(time.Date(2026, 5, 5, 13, 0, 0, 0, time.UTC))
	if !s.Equal(time.Date(2026, 5, 5, 0, 0, 0, 0, time.UTC)) || e.Sub(s) != 24*time.Hour {
		t.Fatal(s, e)
	}
	if (&Tier{Name: "x", Period: "fortnight"}).Validate() == nil {
		t.Fatal("bad period accepted")
	}
}

func TestModelGlobs(t *testing.T) {
	tr := DefaultTiers()[0]
	for m, want := range map[string]bool{"gpt-4o-mini": true, "gpt-4o": false, "claude-haiku-4-5": true, "claude-opus-4-1": false, "llama-3.3-70b-versatile": true} {
		if tr.AllowsModel(m) != want {
			t.Errorf("%s: %v", m, !want)
		}
	}
	if !(&Tier{Name: "all"}).AllowsModel("anything") {
		t.Fatal("empty list should allow all")
	}
}
