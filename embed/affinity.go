package embed

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
)

// PerplexityTolerance is how close each point's entropy gets to
// log(perplexity), in nats.
const PerplexityTolerance = 1e-5

// calibrate finds, for each point i, the Gaussian precision β_i for which
// the conditional distribution p_{j|i} ∝ exp(−β_i·d²_ij) over its
// neighbours has entropy log(perplexity) (van der Maaten & Hinton 2008,
// §2), and returns the conditional probabilities (N×K, row-major, float64)
// and each row's β. Rows are independent and split over the cores.
func calibrate(ctx context.Context, nb *Neighbors, perplexity float64, threads int) (cond []float64, beta []float64, err error) {
	n, k := nb.N, nb.K
	cond = make([]float64, n*k)
	beta = make([]float64, n)
	target := math.Log(perplexity)
	err = parallelRows(ctx, n, threads, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			beta[i] = calibrateRow(nb.Dist2[i*k:(i+1)*k], target, cond[i*k:(i+1)*k])
		}
	})
	return cond, beta, err
}

// calibrateShares is calibrate for Run, without the N×K float64
// conditional probabilities (720 MB at a million points): each row's
// p_{j|i} is found in a per-goroutine buffer and stored over the row's
// squared distances as its share of P, float32(p_{j|i}/2N), the value
// symmetrize adds. nb.Dist2 holds those shares afterwards.
func calibrateShares(ctx context.Context, nb *Neighbors, perplexity float64, threads int) error {
	n, k := nb.N, nb.K
	target := math.Log(perplexity)
	norm := 1 / (2 * float64(n))
	return parallelRows(ctx, n, threads, func(lo, hi int) {
		p := make([]float64, k)
		for i := lo; i < hi; i++ {
			d := nb.Dist2[i*k : (i+1)*k]
			calibrateRow(d, target, p)
			for j, v := range p {
				d[j] = float32(v * norm)
			}
		}
	})
}

// sharesOf stores each conditional probability's share of P,
// float32(p_{j|i}/2N), into dst (len(cond) values) and returns dst.
func sharesOf(cond []float64, n int, dst []float32) []float32 {
	norm := 1 / (2 * float64(n))
	for e, v := range cond {
		dst[e] = float32(v * norm)
	}
	return dst
}

// calibrateRow solves H(β) = target for one row of squared distances d
// (ascending) and writes the normalised probabilities into p. With
// distances shifted by their minimum (which cancels in the normalisation),
// H(β) = log Σ_j e^{−β·d_j} + β·E_p[d] and dH/dβ = −β·Var_p(d) ≤ 0, so H
// falls monotonically from log K to 0: Newton steps on log β converge in
// a handful of iterations, and bisection on a bracket guards them.
func calibrateRow(d []float32, target float64, p []float64) float64 {
	k := len(d)
	dmin := float64(d[0])
	for _, v := range d {
		dmin = min(dmin, float64(v))
	}
	entropy := func(beta float64) (h, dh float64) {
		sum, mean := 0.0, 0.0
		for j, v := range d {
			dj := float64(v) - dmin
			e := math.Exp(-beta * dj)
			p[j] = e
			sum += e
			mean += e * dj
		}
		mean /= sum
		variance := 0.0
		for j, v := range d {
			dj := float64(v) - dmin
			p[j] /= sum
			variance += p[j] * (dj - mean) * (dj - mean)
		}
		return math.Log(sum) + beta*mean, -beta * variance
	}
	// Start from the β that makes exp(−β·d) fall by e^target over the
	// median distance: within a few Newton steps of the answer for most
	// data.
	spread := float64(d[k/2]) - dmin
	if !(spread > 0) {
		spread = float64(d[k-1]) - dmin
	}
	if !(spread > 0) {
		// Every neighbour at the same distance: any β gives the uniform
		// distribution, the closest to the target there is.
		for j := range p {
			p[j] = 1 / float64(k)
		}
		return 1
	}
	beta := max(target, 1) / spread
	lo, hi := 0.0, math.Inf(1)
	for range 200 {
		h, dh := entropy(beta)
		diff := h - target
		if math.Abs(diff) < PerplexityTolerance/4 {
			return beta
		}
		if diff > 0 {
			lo = beta // entropy too high: sharpen
		} else {
			hi = beta
		}
		next := beta - diff/dh // Newton
		if !(next > lo && next < hi) || dh == 0 {
			if math.IsInf(hi, 1) {
				next = beta * 2
			} else {
				next = (lo + hi) / 2
			}
		}
		if next == beta {
			break
		}
		beta = next
	}
	entropy(beta)
	return beta
}

// symmetrize returns P = (P_cond + P_condᵀ) / 2N as CSR, rows sorted by
// column and duplicate entries merged. Values are float32 (see CSR).
func symmetrize(ctx context.Context, nb *Neighbors, cond []float64, threads int) (*CSR, error) {
	return symmetrizeShares(ctx, nb, sharesOf(cond, nb.N, make([]float32, len(cond))), threads)
}

// symmetrizeShares is symmetrize from each edge's share of P,
// float32(p_{j|i}/2N) (N×K in the order of nb; see calibrateShares).
//
// Memory: P's pattern is found first, as column indices only, from the
// K own neighbours of each row and the list of rows that list it (N·K
// int32), and written into P at its exact size; the values are then added
// into P directly. So nothing but P and one int32 index of N·K entries is
// held besides the neighbours and the shares (the previous version held an
// index of 2·N·K entries and the float64 conditional probabilities: 1.1 GB
// more at a million points).
func symmetrizeShares(ctx context.Context, nb *Neighbors, shares []float32, threads int) (*CSR, error) {
	n, k := nb.N, nb.K
	if n*k*2 > math.MaxInt32 {
		return nil, fmt.Errorf("affinities: %d×%d neighbours exceed the sparse matrix's 32-bit index", n, k)
	}
	p, err := symmetricPattern(ctx, nb, threads)
	if err != nil {
		return nil, err
	}
	// Values: p_ij = (p_j|i + p_i|j) / 2N. Edge i→j adds to rows i and j;
	// each worker owns a range of rows and adds every edge's share that
	// lands in its rows, in the order of i, so the sums do not depend on
	// the thread count.
	p.Val = make([]float32, len(p.Col))
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	parts := max(1, min(threads, n))
	var wg sync.WaitGroup
	for part := range parts {
		lo, hi := int32(part*n/parts), int32((part+1)*n/parts)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range int32(n) {
				if i%4096 == 0 && ctx.Err() != nil {
					return
				}
				for t, j := range nb.Index[int(i)*k : (int(i)+1)*k] {
					v := shares[int(i)*k+t]
					if i >= lo && i < hi {
						p.Val[p.find(i, j)] += v
					}
					if j >= lo && j < hi {
						p.Val[p.find(j, i)] += v
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// find is the index in Col/Val of entry (i, j), which must exist.
func (m *CSR) find(i, j int32) int32 {
	lo := m.RowPtr[i]
	e, _ := slices.BinarySearch(m.Col[lo:m.RowPtr[i+1]], j)
	return lo + int32(e)
}

// symmetricPattern returns P's rows and columns (Val nil): row i holds its
// own K neighbours and every j that lists i, sorted, without duplicates.
// The rows that list each j are gathered first (ascending, N·K int32 in
// all); each row is then the merge of its sorted own neighbours with them,
// done twice: once to count, once to write into P's exact-size columns.
func symmetricPattern(ctx context.Context, nb *Neighbors, threads int) (*CSR, error) {
	n, k := nb.N, nb.K
	revPtr := make([]int32, n+1)
	for _, j := range nb.Index {
		revPtr[j+1]++
	}
	for i := range n {
		revPtr[i+1] += revPtr[i]
	}
	fill := slices.Clone(revPtr[:n])
	rev := make([]int32, revPtr[n])
	for i := range n {
		for _, j := range nb.Index[i*k : (i+1)*k] {
			rev[fill[j]] = int32(i)
			fill[j]++
		}
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	fill = nil
	// row merges the sorted own neighbours of i with those listing it into
	// dst (nil: count only) and returns the row's length.
	row := func(i int, own []int32, dst []int32) int32 {
		own = append(own[:0], nb.Index[i*k:(i+1)*k]...)
		slices.Sort(own)
		in := rev[revPtr[i]:revPtr[i+1]]
		var m int32
		for len(own) > 0 || len(in) > 0 {
			var c int32
			switch {
			case len(in) == 0 || (len(own) > 0 && own[0] < in[0]):
				c, own = own[0], own[1:]
			case len(own) == 0 || in[0] < own[0]:
				c, in = in[0], in[1:]
			default: // listed both ways: one entry
				c, own, in = own[0], own[1:], in[1:]
			}
			if dst != nil {
				dst[m] = c
			}
			m++
		}
		return m
	}
	p := &CSR{N: n, RowPtr: make([]int32, n+1)}
	err := parallelRows(ctx, n, threads, func(lo, hi int) {
		own := make([]int32, k)
		for i := lo; i < hi; i++ {
			p.RowPtr[i+1] = row(i, own, nil)
		}
	})
	if err != nil {
		return nil, err
	}
	for i := range n {
		p.RowPtr[i+1] += p.RowPtr[i]
	}
	p.Col = make([]int32, p.RowPtr[n])
	err = parallelRows(ctx, n, threads, func(lo, hi int) {
		own := make([]int32, k)
		for i := lo; i < hi; i++ {
			row(i, own, p.Col[p.RowPtr[i]:p.RowPtr[i+1]])
		}
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// parallelRows runs fn over [0, n) split into fixed chunks on threads
// goroutines, checking ctx between chunks. Chunk bounds depend only on n
// and threads, so results are deterministic.
func parallelRows(ctx context.Context, n, threads int, fn func(lo, hi int)) error {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	const grain = 256
	chunks := max(1, min((n+grain-1)/grain, 8*threads))
	var wg sync.WaitGroup
	next := make(chan int, chunks)
	for c := range chunks {
		next <- c
	}
	close(next)
	for range min(threads, chunks) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				if ctx.Err() != nil {
					return
				}
				fn(c*n/chunks, (c+1)*n/chunks)
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// Calibrate is the host's perplexity calibration (see calibrate), exported
// so other backends' calibrations can be checked against it. threads ≤ 0
// means GOMAXPROCS.
func Calibrate(ctx context.Context, nb *Neighbors, perplexity float64, threads int) (cond, beta []float64, err error) {
	return calibrate(ctx, nb, perplexity, threads)
}

// Symmetrize is Run's P = (P_cond + P_condᵀ)/2N from conditional
// probabilities in the order of nb (from Calibrate or an AffinityBackend).
func Symmetrize(ctx context.Context, nb *Neighbors, cond []float64, threads int) (*CSR, error) {
	return symmetrize(ctx, nb, cond, threads)
}
