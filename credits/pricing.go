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
	if in < 0 || out < 0 || inPrice < 0 || outPrice < 0 || creditsPerUSD <= 0 {
		return 0
	}
	h1, l1 := bits.Mul64(uint64(in), uint64(inPrice))
	h2, l2 := bits.Mul64(uint64(out), uint64(outPrice))
	lo, carry := bits.Add64(l1, l2, 0)
	hi, _ := bits.Add64(h1, h2, carry)
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
