package explore

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// blobs draws Gaussian islands (label k+1 for island k) over uniform
// background noise (label 0) in [-50, 50]².
func blobs(rng *rand.Rand, centres [][2]float64, sigma []float64, per []int, noise int) (xy []float64, truth []int) {
	for k, c := range centres {
		for range per[k] {
			xy = append(xy, c[0]+rng.NormFloat64()*sigma[k], c[1]+rng.NormFloat64()*sigma[k])
			truth = append(truth, k+1)
		}
	}
	for range noise {
		xy = append(xy, rng.Float64()*100-50, rng.Float64()*100-50)
		truth = append(truth, 0)
	}
	return xy, truth
}

func TestHotspotsFindsKnownClusters(t *testing.T) {
	cases := []struct {
		name    string
		centres [][2]float64
		sigma   []float64
		per     []int
		noise   int
	}{
		{"three equal islands", [][2]float64{{-30, -30}, {30, -30}, {0, 30}}, []float64{3, 3, 3}, []int{500, 500, 500}, 0},
		{"islands of different density and size", [][2]float64{{-30, 0}, {20, 20}, {25, -25}, {0, -40}},
			[]float64{6, 1.5, 3, 0.8}, []int{2000, 300, 800, 150}, 0},
		{"islands over background noise", [][2]float64{{-25, 25}, {25, 25}, {0, -20}}, []float64{2, 2, 4}, []int{600, 400, 900}, 1500},
		{"two touching islands", [][2]float64{{-6, 0}, {6, 0}}, []float64{2, 2}, []int{1000, 1000}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			xy, truth := blobs(rand.New(rand.NewPCG(1, 2)), tc.centres, tc.sigma, tc.per, tc.noise)
			labels, spots, err := Hotspots(context.Background(), xy, HotspotOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(spots) != len(tc.centres) {
				t.Fatalf("found %d hotspots, want %d: %+v", len(spots), len(tc.centres), spots)
			}
			// Each island maps to one hotspot holding most of it, and
			// each hotspot is mostly one island.
			seen := map[int]bool{}
			for k := range tc.centres {
				counts := map[int]int{}
				for i, l := range labels {
					if truth[i] == k+1 {
						counts[l]++
					}
				}
				best, bestN := 0, 0
				for l, c := range counts {
					if l != 0 && c > bestN {
						best, bestN = l, c
					}
				}
				if best == 0 || seen[best] || float64(bestN) < 0.8*float64(tc.per[k]) {
					t.Errorf("island %d: best hotspot %d holds %d of %d (%v)", k+1, best, bestN, tc.per[k], counts)
				}
				seen[best] = true
				s := spots[best-1]
				if d := math.Hypot(s.X-tc.centres[k][0], s.Y-tc.centres[k][1]); d > 2*tc.sigma[k] {
					t.Errorf("island %d: centre (%.1f, %.1f) is %.1f from (%v)", k+1, s.X, s.Y, d, tc.centres[k])
				}
				for _, i := range s.Nearest {
					if labels[i] != best {
						t.Errorf("hotspot %d lists point %d of hotspot %d as nearest its centre", best, i, labels[i])
					}
				}
			}
			for i, s := range spots {
				if s.ID != i+1 || (i > 0 && s.Size > spots[i-1].Size) || len(s.Nearest) != 6 {
					t.Errorf("hotspot %d: %+v (want IDs 1.., biggest first, 6 nearest)", i, s)
				}
			}
		})
	}
}

func TestHotspotsNothingInUniformNoise(t *testing.T) {
	for _, n := range []int{500, 5000, 20000} {
		for seed := range uint64(3) {
			rng := rand.New(rand.NewPCG(seed, 7))
			xy := make([]float64, 2*n)
			for i := range xy {
				xy[i] = rng.Float64()*200 - 100
			}
			_, spots, err := Hotspots(context.Background(), xy, HotspotOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(spots) != 0 {
				t.Errorf("n=%d seed %d: %d hotspots in uniform noise (sizes %v)", n, seed, len(spots), sizes(spots))
			}
		}
	}
}

func sizes(s []Hotspot) []int {
	var out []int
	for _, h := range s {
		out = append(out, h.Size)
	}
	return out
}

func TestHotspotsEdgeCases(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		xy   []float64
	}{
		{"empty", nil},
		{"one point", []float64{1, 2}},
		{"all at one place", make([]float64, 2000)},
	} {
		labels, spots, err := Hotspots(ctx, tc.xy, HotspotOptions{})
		if err != nil || len(labels) != len(tc.xy)/2 || len(spots) != 0 {
			t.Errorf("%s: %d labels, %d spots, %v", tc.name, len(labels), len(spots), err)
		}
	}
	if _, _, err := Hotspots(ctx, []float64{0, 0, math.NaN(), 1}, HotspotOptions{MinClusterSize: 1}); err == nil {
		t.Error("NaN coordinate: no error")
	}
}
