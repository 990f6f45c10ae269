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
	n, k := nb.N, nb.K
	if n*k*2 > math.MaxInt32 {
		return nil, fmt.Errorf("affinities: %d×%d neighbours exceed the sparse matrix's 32-bit index", n, k)
	}
	// Row i holds its own K neighbours plus every j that lists i.
	count := make([]int32, n+1)
	for i := range n {
		count[i+1] += int32(k)
		for _, j := range nb.Index[i*k : (i+1)*k] {
			count[j+1]++
		}
	}
	for i := range n {
		count[i+1] += count[i]
	}
	fill := slices.Clone(count[:n])
	col := make([]int32, count[n])
	val := make([]float64, count[n])
	for i := range n {
		for t, j := range nb.Index[i*k : (i+1)*k] {
			p := cond[i*k+t]
			col[fill[i]], val[fill[i]] = j, p
			fill[i]++
			col[fill[j]], val[fill[j]] = int32(i), p
			fill[j]++
		}
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	// Sort each row by column and merge duplicates (i lists j and j lists i).
	rowLen := make([]int32, n)
	norm := 1 / (2 * float64(n))
	err := parallelRows(ctx, n, threads, func(lo, hi int) {
		type entry struct {
			c int32
			v float64
		}
		var buf []entry
		for i := lo; i < hi; i++ {
			a, b := count[i], count[i+1]
			buf = buf[:0]
			for e := a; e < b; e++ {
				buf = append(buf, entry{col[e], val[e]})
			}
			slices.SortFunc(buf, func(x, y entry) int { return int(x.c) - int(y.c) })
			w := a
			for t := 0; t < len(buf); t++ {
				if w > a && col[w-1] == buf[t].c {
					val[w-1] += buf[t].v
					continue
				}
				col[w], val[w] = buf[t].c, buf[t].v
				w++
			}
			rowLen[i] = w - a
		}
	})
	if err != nil {
		return nil, err
	}
	p := &CSR{N: n, RowPtr: make([]int32, n+1)}
	for i := range n {
		p.RowPtr[i+1] = p.RowPtr[i] + rowLen[i]
	}
	p.Col = make([]int32, p.RowPtr[n])
	p.Val = make([]float32, p.RowPtr[n])
	for i := range n {
		src, dst := count[i], p.RowPtr[i]
		for t := range rowLen[i] {
			p.Col[dst+t] = col[src+t]
			p.Val[dst+t] = float32(val[src+t] * norm)
		}
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
