package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/tsnemap/tsnemap/embed"
)

// testProblem is a t-SNE problem built from Gaussian blobs: the data, the
// cluster of each point, and P from k exact nearest neighbours calibrated to
// a perplexity (a small stand-in for the affinity code of package embed).
type testProblem struct {
	n, d, clusters int
	data           []float64
	label          []int
	p              *embed.CSR
}

// newTestProblem draws n points in d dimensions around `clusters` centres
// (unit spread, centres with spread 4) and builds P with perplexity k/3.
func newTestProblem(n, d, clusters, k int, seed uint64) *testProblem {
	rng := rand.New(rand.NewPCG(seed, 7))
	centres := make([]float64, clusters*d)
	for i := range centres {
		centres[i] = 4 * rng.NormFloat64()
	}
	tp := &testProblem{n: n, d: d, clusters: clusters, data: make([]float64, n*d), label: make([]int, n)}
	for i := range n {
		c := rng.IntN(clusters)
		tp.label[i] = c
		for j := range d {
			tp.data[i*d+j] = centres[c*d+j] + rng.NormFloat64()
		}
	}
	k = min(k, n-1)
	idx, dist := tp.knn(k)
	tp.p = symmetricP(n, k, idx, calibrate(n, k, dist, float64(k)/3))
	return tp
}

// knn finds the k nearest neighbours of every point exactly, sweeping the
// points sorted by their first coordinate outwards until the slab is wider
// than the k-th distance found.
func (tp *testProblem) knn(k int) (idx []int32, dist []float64) {
	n, d := tp.n, tp.d
	byX := make([]int, n)
	for i := range byX {
		byX[i] = i
	}
	sort.Slice(byX, func(a, b int) bool { return tp.data[byX[a]*d] < tp.data[byX[b]*d] })
	idx = make([]int32, n*k)
	dist = make([]float64, n*k)
	type cand struct {
		d2 float64
		j  int
	}
	best := make([]cand, 0, k+1)
	for r, i := range byX {
		best = best[:0]
		xi := tp.data[i*d]
		consider := func(j int) {
			s := 0.0
			for c := range d {
				t := tp.data[i*d+c] - tp.data[j*d+c]
				s += t * t
			}
			if len(best) == k && s >= best[k-1].d2 {
				return
			}
			at, _ := slices.BinarySearchFunc(best, s, func(c cand, v float64) int {
				if c.d2 < v {
					return -1
				}
				if c.d2 > v {
					return 1
				}
				return 0
			})
			best = slices.Insert(best, at, cand{s, j})
			if len(best) > k {
				best = best[:k]
			}
		}
		lo, hi := r-1, r+1
		for lo >= 0 || hi < n {
			worst := math.Inf(1)
			if len(best) == k {
				worst = best[k-1].d2
			}
			dl, dh := math.Inf(1), math.Inf(1)
			if lo >= 0 {
				t := xi - tp.data[byX[lo]*d]
				dl = t * t
			}
			if hi < n {
				t := tp.data[byX[hi]*d] - xi
				dh = t * t
			}
			if min(dl, dh) >= worst {
				break
			}
			if dl <= dh {
				consider(byX[lo])
				lo--
			} else {
				consider(byX[hi])
				hi++
			}
		}
		for m, c := range best {
			idx[i*k+m] = int32(c.j)
			dist[i*k+m] = c.d2
		}
	}
	return idx, dist
}

// calibrate turns squared distances into conditional probabilities p_{j|i}
// whose entropy is log(perplexity), by bisection on the precision.
func calibrate(n, k int, dist []float64, perplexity float64) []float64 {
	out := make([]float64, n*k)
	target := math.Log(perplexity)
	for i := range n {
		d := dist[i*k : (i+1)*k]
		p := out[i*k : (i+1)*k]
		lo, hi, beta := 0.0, math.Inf(1), 1.0
		for range 100 {
			sum, sdp := 0.0, 0.0
			for j, v := range d {
				p[j] = math.Exp(-beta * (v - d[0]))
				sum += p[j]
				sdp += (v - d[0]) * p[j]
			}
			h := math.Log(sum) + beta*sdp/sum
			for j := range p {
				p[j] /= sum
			}
			if math.Abs(h-target) < 1e-6 {
				break
			}
			if h > target {
				lo = beta
				if math.IsInf(hi, 1) {
					beta *= 2
				} else {
					beta = (beta + hi) / 2
				}
			} else {
				hi = beta
				beta = (beta + lo) / 2
			}
		}
	}
	return out
}

// symmetricP is (P_{j|i} + P_{i|j}) / 2n on the union of the kNN graphs.
func symmetricP(n, k int, idx []int32, cond []float64) *embed.CSR {
	type ent struct {
		col int32
		v   float64
	}
	rows := make([][]ent, n)
	for i := range n {
		for m := range k {
			j := idx[i*k+m]
			v := cond[i*k+m] / float64(2*n)
			rows[i] = append(rows[i], ent{j, v})
			rows[j] = append(rows[j], ent{int32(i), v})
		}
	}
	p := &embed.CSR{N: n, RowPtr: make([]int32, n+1)}
	for i, r := range rows {
		slices.SortFunc(r, func(a, b ent) int { return int(a.col - b.col) })
		for a := 0; a < len(r); {
			b, v := a, 0.0
			for b < len(r) && r[b].col == r[a].col {
				v += r[b].v
				b++
			}
			p.Col = append(p.Col, r[a].col)
			p.Val = append(p.Val, float32(v))
			a = b
		}
		p.RowPtr[i+1] = int32(len(p.Col))
	}
	return p
}

// initialY is the usual start: tiny Gaussian noise (sd 1e-4).
func initialY(n, dims int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 11))
	y := make([]float32, n*dims)
	for i := range y {
		y[i] = float32(1e-4 * rng.NormFloat64())
	}
	return y
}

// spreadY is an embedding as it looks late in a run: one blob per cluster,
// centres spread over a disc of the given radius, points with sd 1.5.
func spreadY(tp *testProblem, dims int, radius float64, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 13))
	centres := make([]float64, tp.clusters*dims)
	for c := range tp.clusters {
		for {
			ok := 0.0
			for d := range dims {
				centres[c*dims+d] = radius * (2*rng.Float64() - 1)
				ok += centres[c*dims+d] * centres[c*dims+d]
			}
			if ok <= radius*radius {
				break
			}
		}
	}
	y := make([]float32, tp.n*dims)
	for i := range tp.n {
		for d := range dims {
			y[i*dims+d] = float32(centres[tp.label[i]*dims+d] + 1.5*rng.NormFloat64())
		}
	}
	return y
}

func toFloat64(y []float32) []float64 {
	out := make([]float64, len(y))
	for i, v := range y {
		out[i] = float64(v)
	}
	return out
}

// schedule is the usual one: 250 exaggerated (12) steps at momentum 0.5,
// then momentum 0.8, learning rate max(N/12/4, 50).
func schedule(n, it int) embed.StepParams {
	lr := max(float64(n)/12/4, 50)
	if it < 250 {
		return embed.StepParams{Exaggeration: 12, Momentum: 0.5, LearningRate: lr}
	}
	return embed.StepParams{Exaggeration: 1, Momentum: 0.8, LearningRate: lr}
}
