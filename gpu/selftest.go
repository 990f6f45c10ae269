package gpu

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/tsnemap/tsnemap/embed"
)

// selfTest runs every kernel of a backend once on a small problem and
// compares it with a float64 computation on the host. New runs it on the
// device, so a GPU whose JIT, driver or memory misbehaves (or a kernel that
// does not do what the host expects) is refused at start-up, with the
// reason, and --backend auto falls back to the CPU instead of producing
// wrong maps; it takes a few milliseconds. It is written against
// embed.Backend so that its references are themselves checked on the CPU
// backend, without a GPU (TestSelfTestOnCPU).
func selfTest(ctx context.Context, b embed.Backend) error {
	rng := rand.New(rand.NewPCG(1, 2))
	const n, d, k = 300, 7, 12
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(rng.NormFloat64()) + float32(i/d%3)*4
	}

	// PCA: column means and both products, on float32 and on uint8 rows.
	pix := make([]uint8, n*d)
	for i := range pix {
		pix[i] = uint8(rng.IntN(256))
	}
	mean := make([]float32, d)
	for c := range mean {
		mean[c] = float32(c) * 10
	}
	const l = 3
	m := make([]float32, d*l)
	for i := range m {
		m[i] = float32(rng.NormFloat64())
	}
	for _, data := range []embed.Data{{N: n, D: d, F32: x}, {N: n, D: d, U8: pix}} {
		at := func(i, c int) float64 {
			if data.U8 != nil {
				return float64(data.U8[i*d+c])
			}
			return float64(data.F32[i*d+c])
		}
		means := make([]float64, d)
		if err := b.ColumnMeans(ctx, data, means); err != nil {
			return err
		}
		for c := range d {
			want := 0.0
			for i := range n {
				want += at(i, c)
			}
			want /= n
			if math.Abs(means[c]-want) > 1e-9*(1+math.Abs(want)) {
				return fmt.Errorf("column mean %d = %v, want %v", c, means[c], want)
			}
		}
		// MulTransLeft: (X − mean)ᵀ·B for B (n×l).
		bl := make([]float32, n*l)
		for i := range bl {
			bl[i] = float32(rng.NormFloat64())
		}
		tl := make([]float32, d*l)
		if err := b.MulTransLeft(ctx, data, mean, bl, l, tl); err != nil {
			return err
		}
		for c := range d {
			for j := range l {
				want := 0.0
				for i := range n {
					want += (at(i, c) - float64(mean[c])) * float64(bl[i*l+j])
				}
				if math.Abs(float64(tl[c*l+j])-want) > 1e-4*(1+math.Abs(want)) {
					return fmt.Errorf("mul trans left [%d,%d] = %v, want %v", c, j, tl[c*l+j], want)
				}
			}
		}
		got := make([]float32, n*l)
		if err := b.MulRight(ctx, data, mean, m, l, got); err != nil {
			return err
		}
		for i := range n {
			for j := range l {
				want := 0.0
				for c := range d {
					want += (at(i, c) - float64(mean[c])) * float64(m[c*l+j])
				}
				if math.Abs(float64(got[i*l+j])-want) > 1e-3*(1+math.Abs(want)) {
					return fmt.Errorf("mul right [%d,%d] = %v, want %v", i, j, got[i*l+j], want)
				}
			}
		}
	}

	// A held input gives the same products as a streamed one.
	if h, ok := b.(embed.DataHolder); ok {
		data := embed.Data{N: n, D: d, U8: pix}
		streamed, held := make([]float32, n*l), make([]float32, n*l)
		if err := b.MulRight(ctx, data, mean, m, l, streamed); err != nil {
			return err
		}
		release, err := h.Hold(ctx, data)
		if err != nil {
			return err
		}
		err = b.MulRight(ctx, data, mean, m, l, held)
		release()
		if err != nil {
			return err
		}
		if !slices.Equal(streamed, held) {
			return fmt.Errorf("mul right of a held input differs from the streamed one")
		}
	}

	// Exact neighbours.
	nb, err := b.KNearest(ctx, x, n, d, k, embed.NeighborsExact, 1)
	if err != nil {
		return err
	}
	for i := range n {
		dist := make([]float64, 0, n-1)
		for j := range n {
			if j != i {
				dist = append(dist, sqDist32(x, i, j, d))
			}
		}
		slices.Sort(dist)
		for t := range k {
			if math.Abs(float64(nb.Dist2[i*k+t])-dist[t]) > 1e-4*(1+dist[t]) {
				return fmt.Errorf("neighbour %d of point %d at %v, want %v", t, i, nb.Dist2[i*k+t], dist[t])
			}
			// The index must name a point at that distance (ties aside,
			// the t-th nearest), other than i.
			j := int(nb.Index[i*k+t])
			if j < 0 || j >= n || j == i {
				return fmt.Errorf("neighbour %d of point %d is point %d", t, i, j)
			}
			if dj := sqDist32(x, i, j, d); math.Abs(dj-dist[t]) > 1e-4*(1+dist[t]) {
				return fmt.Errorf("neighbour %d of point %d is point %d at %v, want a point at %v", t, i, j, dj, dist[t])
			}
		}
	}

	// Calibration, against the host's.
	host, _, err := embed.Calibrate(ctx, nb, 4, 1)
	if err != nil {
		return err
	}
	cond := host
	if ab, ok := b.(embed.AffinityBackend); ok {
		if cond, err = ab.Calibrate(ctx, nb, 4); err != nil {
			return err
		}
	}
	for i := range cond {
		if math.Abs(cond[i]-host[i]) > 1e-6 {
			return fmt.Errorf("calibration p[%d] = %v, host %v", i, cond[i], host[i])
		}
	}

	// One optimiser step and KL, against the float64 reference gradient.
	p, err := embed.Symmetrize(ctx, nb, cond, 1)
	if err != nil {
		return err
	}
	for _, dims := range []int{2, 3} {
		y0 := make([]float32, n*dims)
		for i := range y0 {
			y0[i] = float32(rng.NormFloat64())
		}
		if err := checkStep(ctx, b, p, y0, dims, embed.RepulsionExact); err != nil {
			return fmt.Errorf("%d-D: %w", dims, err)
		}
		if dims == 2 {
			// The FFT-interpolation repulsion (every fft_* kernel and the
			// host side of fft.go), against the same exact reference.
			if err := checkStep(ctx, b, p, y0, dims, embed.RepulsionFFT); err != nil {
				return fmt.Errorf("2-D, FFT repulsion: %w", err)
			}
		}
	}
	return nil
}

// checkStep compares one Step from y0 (gains 1, no momentum yet: the
// update is −rate·1.2·gradient, then re-centring) and the KL after it with
// embed.ExactGradient. With the FFT repulsion the step may differ from the
// exact one by the method's error: 1 % of the largest move (the method
// keeps the force field within fftForceTol; a broken kernel is off by far
// more).
func checkStep(ctx context.Context, b embed.Backend, p *embed.CSR, y0 []float32, dims int, method embed.Repulsion) error {
	n := p.N
	const ex, rate = 4.0, 10.0
	tol := 1e-3
	if method == embed.RepulsionFFT {
		tol = 1e-2
	}
	opt, err := b.NewOptimizer(ctx, p, y0, embed.OptimizerConfig{N: n, Dims: dims, Repulsion: method})
	if err != nil {
		return err
	}
	defer opt.Close()
	if err := opt.Step(ctx, embed.StepParams{Exaggeration: ex, Momentum: 0.5, LearningRate: rate}); err != nil {
		return err
	}
	got := make([]float32, n*dims)
	if err := opt.Coordinates(got); err != nil {
		return err
	}
	kl, err := opt.KL(ctx)
	if err != nil {
		return err
	}
	y := make([]float64, n*dims)
	for i, v := range y0 {
		y[i] = float64(v)
	}
	grad, _ := embed.ExactGradient(p, y, dims, ex)
	want := make([]float64, n*dims)
	var centroid [3]float64
	for i := range want {
		want[i] = y[i] - rate*1.2*grad[i]
		centroid[i%dims] += want[i] / float64(n)
	}
	move := 0.0
	for i := range want {
		want[i] -= centroid[i%dims]
		move = math.Max(move, math.Abs(want[i]-y[i]))
	}
	if m := opt.Repulsion(); m != method {
		return fmt.Errorf("asked for %s repulsion, the optimiser runs %s", method, m)
	}
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > tol*move+1e-5 {
			return fmt.Errorf("step: y[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	y1 := make([]float64, len(got))
	for i, v := range got {
		y1[i] = float64(v)
	}
	if wantKL := embed.ExactKL(p, y1, dims); math.Abs(kl-wantKL) > 1e-6*(1+math.Abs(wantKL)) {
		return fmt.Errorf("KL = %v, want %v", kl, wantKL)
	}
	return nil
}

func sqDist32(x []float32, i, j, d int) float64 {
	s := 0.0
	for c := range d {
		t := float64(x[i*d+c]) - float64(x[j*d+c])
		s += t * t
	}
	return s
}
