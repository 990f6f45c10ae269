// Package synth makes labelled synthetic data for benchmarks and quality
// checks: Gaussian clusters of feature vectors, and image-like pixel rows.
package synth

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
)

// Clusters draws n points in d dimensions from c isotropic unit Gaussians
// whose centres are drawn with standard deviation sep/√2 per coordinate
// (so centres lie about sep apart). Point i belongs to cluster i mod c.
func Clusters(n, d, c int, sep float64, seed uint64) (x []float32, labels []int) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	centres := make([]float64, c*d)
	for i := range centres {
		centres[i] = rng.NormFloat64() * sep / math.Sqrt2
	}
	x = make([]float32, n*d)
	labels = make([]int, n)
	for i := range n {
		labels[i] = i % c
		for j := range d {
			x[i*d+j] = float32(centres[labels[i]*d+j] + rng.NormFloat64())
		}
	}
	return x, labels
}

// Images makes n rows of w×h RGB pixels (uint8) in c classes: each class
// is a smooth random picture (a few coloured blobs), and each row is its
// class's picture shifted by a few pixels, with noise. Like photographs,
// neighbouring pixels are strongly correlated, so the spectrum decays.
func Images(n, w, h, c int, seed uint64) (pix []uint8, labels []int) {
	g := NewImageSet(w, h, c, seed)
	d := w * h * 3
	pix = make([]uint8, n*d)
	labels = make([]int, n)
	g.Fill(0, n, pix, labels)
	return pix, labels
}

// ImageSet makes the rows of Images one block at a time, for callers that
// spool them instead of holding all N: rows lo…hi of Images(n, …) are
// Fill(lo, hi, …)'s, whatever n and the blocks.
type ImageSet struct {
	w, h, c int
	seed    uint64
	protos  [][]blob
}

type blob struct{ x, y, r, cr, cg, cb float64 }

// NewImageSet draws the c classes' prototypes of w×h images.
func NewImageSet(w, h, c int, seed uint64) *ImageSet {
	rng := rand.New(rand.NewPCG(seed, 0x1a6e))
	protos := make([][]blob, c)
	for k := range protos {
		for range 6 {
			protos[k] = append(protos[k], blob{
				x: rng.Float64() * float64(w), y: rng.Float64() * float64(h),
				r:  (0.1 + 0.25*rng.Float64()) * float64(w),
				cr: rng.Float64()*200 - 100, cg: rng.Float64()*200 - 100, cb: rng.Float64()*200 - 100,
			})
		}
	}
	return &ImageSet{w: w, h: h, c: c, seed: seed, protos: protos}
}

// Fill writes rows [lo, hi) into pix ((hi−lo)·w·h·3 values) and their
// labels into labels (hi−lo values).
func (g *ImageSet) Fill(lo, hi int, pix []uint8, labels []int) {
	d := g.w * g.h * 3
	// Rows are independent (each has its own generator), so they are made
	// in parallel and the result does not depend on the thread count.
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for t := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo + t; i < hi; i += workers {
				labels[i-lo] = i % g.c
				g.row(i, pix[(i-lo)*d:(i-lo+1)*d])
			}
		}()
	}
	wg.Wait()
}

// row makes image i.
func (g *ImageSet) row(i int, row []uint8) {
	w, h := g.w, g.h
	rr := rand.New(rand.NewPCG(g.seed, uint64(i)))
	k := i % g.c
	dx, dy := rr.NormFloat64()*2, rr.NormFloat64()*2
	for y := range h {
		for x := range w {
			r, gr, b := 128.0, 128.0, 128.0
			for _, bl := range g.protos[k] {
				ex, ey := float64(x)-bl.x-dx, float64(y)-bl.y-dy
				f := math.Exp(-(ex*ex + ey*ey) / (2 * bl.r * bl.r))
				r += f * bl.cr
				gr += f * bl.cg
				b += f * bl.cb
			}
			o := (y*w + x) * 3
			row[o] = clamp(r + rr.NormFloat64()*8)
			row[o+1] = clamp(gr + rr.NormFloat64()*8)
			row[o+2] = clamp(b + rr.NormFloat64()*8)
		}
	}
}

func clamp(v float64) uint8 {
	return uint8(math.Max(0, math.Min(255, math.Round(v))))
}

// KNNAccuracy is the fraction of queried points whose label is the
// majority label among their 10 nearest other points in y (N×dims). At
// most queries points are asked (a fixed sample, for large N); every
// point is a candidate neighbour.
func KNNAccuracy(y []float32, dims int, labels []int, queries int) float64 {
	n := len(labels)
	step := max(1, n/max(queries, 1))
	const k = 10
	type cand struct {
		d float32
		j int
	}
	good, asked := 0, 0
	best := make([]cand, 0, k+1)
	for i := 0; i < n; i += step {
		best = best[:0]
		for j := range n {
			if j == i {
				continue
			}
			var s float32
			for c := range dims {
				v := y[i*dims+c] - y[j*dims+c]
				s += v * v
			}
			if len(best) == k && s >= best[k-1].d {
				continue
			}
			pos, _ := slices.BinarySearchFunc(best, s, func(a cand, t float32) int {
				if a.d < t {
					return -1
				}
				return 1
			})
			best = slices.Insert(best, pos, cand{s, j})
			if len(best) > k {
				best = best[:k]
			}
		}
		votes := map[int]int{}
		top, topN := -1, 0
		for _, c := range best {
			l := labels[c.j]
			votes[l]++
			if votes[l] > topN || (votes[l] == topN && l < top) {
				top, topN = l, votes[l]
			}
		}
		if top == labels[i] {
			good++
		}
		asked++
	}
	return float64(good) / float64(asked)
}

// KNNAccuracyAgainst is the share of the query points (q, M×dims) whose
// label is the majority label among their 10 nearest reference points
// (ref, N×dims): how well a map places points that were added to it,
// judged by the points that were there. Ties go to the smallest label.
// It splits the queries over the cores.
func KNNAccuracyAgainst(ref []float32, refLabels []int, q []float32, qLabels []int, dims int) float64 {
	const k = 10
	m := len(qLabels)
	if m == 0 {
		return math.NaN()
	}
	good := make([]bool, m)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dist := make([]float32, k)
			idx := make([]int, k)
			for i := w; i < m; i += workers {
				for a := range k {
					dist[a], idx[a] = float32(math.Inf(1)), -1
				}
				for j := range refLabels {
					var s float32
					for c := range dims {
						v := q[i*dims+c] - ref[j*dims+c]
						s += v * v
					}
					if s >= dist[k-1] {
						continue
					}
					a := k - 1
					for a > 0 && dist[a-1] > s {
						dist[a], idx[a] = dist[a-1], idx[a-1]
						a--
					}
					dist[a], idx[a] = s, j
				}
				votes := map[int]int{}
				for _, j := range idx {
					if j >= 0 {
						votes[refLabels[j]]++
					}
				}
				best, bestVotes := -1, -1
				for l, v := range votes {
					if v > bestVotes || (v == bestVotes && l < best) {
						best, bestVotes = l, v
					}
				}
				good[i] = best == qLabels[i]
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, g := range good {
		if g {
			n++
		}
	}
	return float64(n) / float64(m)
}
