package explore

import (
	"context"
	"math/rand/v2"
	"testing"
)

// tsneLike draws a map shaped like a t-SNE map of a collection: islands of
// varied size and spread, and a sprinkle of points between them.
func tsneLike(n int, seed uint64) []float64 {
	rng := rand.New(rand.NewPCG(seed, 99))
	const islands = 40
	type island struct{ x, y, s, w float64 }
	is := make([]island, islands)
	var total float64
	for k := range is {
		is[k] = island{rng.Float64()*160 - 80, rng.Float64()*160 - 80, 1 + rng.Float64()*5, 0.2 + rng.Float64()}
		total += is[k].w
	}
	xy := make([]float64, 0, 2*n)
	for i := range n {
		if i%20 == 0 {
			xy = append(xy, rng.Float64()*180-90, rng.Float64()*180-90)
			continue
		}
		r := rng.Float64() * total
		k := 0
		for ; k < islands-1 && r > is[k].w; k++ {
			r -= is[k].w
		}
		xy = append(xy, is[k].x+rng.NormFloat64()*is[k].s, is[k].y+rng.NormFloat64()*is[k].s)
	}
	return xy
}

// BenchmarkHotspots100k is the target: ≤ 5 s for 100,000 points on
// the 2-core machine (Hotspots runs on one core).
func BenchmarkHotspots100k(b *testing.B) {
	xy := tsneLike(100_000, 1)
	b.ResetTimer()
	var spots []Hotspot
	for b.Loop() {
		var err error
		if _, spots, err = Hotspots(context.Background(), xy, HotspotOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(spots)), "hotspots")
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "points/s")
}
