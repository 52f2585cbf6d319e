package credits

import (
	"math"
	"testing"
)

func TestCostRoundsUp(t *testing.T) {
	cases := []struct {
		in, out, ip, op, cpu, want int64
	}{
		{1000, 500, 2_500_000, 10_000_000, 1, 7_500},                 // $0.0025 + $0.005
		{1, 0, 150_000, 600_000, 1, 1},                               // 0.15 micro → rounds up to 1
		{0, 0, 2_500_000, 10_000_000, 1, 0},                          // nothing used, nothing charged
		{3, 7, 1, 1, 1, 1},                                           // 10 / 1e6 → 1
		{1_000_000, 0, 1_000_000, 0, 1, 1_000_000},                   // exactly one dollar
		{1_000_000, 0, 1_000_000, 0, 100, 100_000_000},               // 100 credits per USD
		{1_000_001, 0, 1_000_000, 0, 1, 1_000_001},                   // exact
		{1 << 40, 1 << 40, 1 << 40, 1 << 40, 1, 2417851639229258350}, // 2^81 / 1e6, exact in 128 bits
		{1 << 60, 1 << 60, 1 << 60, 1 << 60, 1, math.MaxInt64},       // saturates, never wraps
	}
	for _, c := range cases {
		if got := Cost(c.in, c.out, c.ip, c.op, c.cpu); got != c.want {
			t.Errorf("Cost(%d,%d,%d,%d,%d) = %d, want %d", c.in, c.out, c.ip, c.op, c.cpu, got, c.want)
		}
	}
	if Cost(-1, 0, 1, 1, 1) != 0 {
		t.Fatal("negative tokens priced")
	}
}

func TestCostWithCacheParts(t *testing.T) {
	// 100 uncached at 3.00, 1000 cache reads at 0.30, 200 cache writes at 3.75, 50 out at 15.00:
	// tokens × price per 1M / 1M, summed: 300 + 300 + 750 + 750 micro-credits.
	got := CostOf(1, [2]int64{100, 3_000_000}, [2]int64{1000, 300_000}, [2]int64{200, 3_750_000}, [2]int64{50, 15_000_000})
	if got != 300+300+750+750 {
		t.Fatalf("%d", got)
	}
	if CostOf(1, [2]int64{1, 1}, [2]int64{1, 1}) != 1 {
		t.Fatal("parts not summed before rounding")
	}
}
