// Package credits prices requests in integer micro-credits, defines tiers
// and their periods, and meters usage out of provider responses (JSON bodies
// and SSE streams) as they pass.
package credits

import (
	"math"
	"math/bits"
)

// Cost of a request in micro-credits, rounded up: tokens times the price in
// micro-USD per million tokens, times creditsPerUSD (1 by default: 1 credit
// is 1 USD of list price). Exact in 128-bit arithmetic; saturates at MaxInt64.
//
//	cost = ceil((in·inPrice + out·outPrice) · creditsPerUSD / 1,000,000)
func Cost(in, out, inPrice, outPrice, creditsPerUSD int64) int64 {
	return CostOf(creditsPerUSD, [2]int64{in, inPrice}, [2]int64{out, outPrice})
}

// CostOf prices several (tokens, price per 1M) parts, summed exactly before
// the one rounding up: uncached input, cache reads, cache writes, output.
func CostOf(creditsPerUSD int64, parts ...[2]int64) int64 {
	if creditsPerUSD <= 0 {
		return 0
	}
	var hi, lo uint64
	for _, p := range parts {
		if p[0] < 0 || p[1] < 0 {
			return 0
		}
		h, l := bits.Mul64(uint64(p[0]), uint64(p[1]))
		var c uint64
		lo, c = bits.Add64(lo, l, 0)
		hi, c = bits.Add64(hi, h, c)
		if c != 0 {
			return math.MaxInt64
		}
	}
	// (hi,lo) · creditsPerUSD
	h3, l3 := bits.Mul64(lo, uint64(creditsPerUSD))
	hiC := hi*uint64(creditsPerUSD) + h3
	if hi != 0 && hiC/hi != uint64(creditsPerUSD) || hiC >= 1_000_000 {
		return math.MaxInt64 // beyond any balance
	}
	q, r := bits.Div64(hiC, l3, 1_000_000)
	if r != 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(q)
}
