package embed

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// pcaOversample and pcaPowerIterations follow Halko, Martinsson & Tropp
// (2011), "Finding structure with randomness", Algorithm 4.4: sampling
// l = k + 10 directions and two rounds of subspace iteration capture the
// leading k-dimensional subspace of image data (whose spectrum decays
// slowly) well enough for a neighbour search, at 2 + 2·2 = 6 passes over
// the data. Each pass is one MulRight or MulTransLeft on the backend.
const (
	pcaOversample      = 10
	pcaPowerIterations = 2
)

// PCA holds the leading principal components of the centred input.
type PCA struct {
	K      int       // number of components
	Scores []float32 // N×K row-major: the centred rows projected on the axes
	// Variance is each component's share of the variance captured by the
	// sampled subspace (descending).
	Variance []float64
	// Mean (D) and Axes (D×K row-major) project any row x onto the
	// components: (x − Mean)·Axes. They are what an addition needs to place
	// new rows in the same space as Scores.
	Mean []float32
	Axes []float32
}

// principalComponents computes the k leading principal component scores
// of the centred data by randomized SVD (Halko, Martinsson & Tropp 2011).
// The data are read only through the backend's block products, so uint8
// pixels are never expanded to floats as a whole; rows from a RowSource
// are read a block at a time in each of the passes (rows.go).
func principalComponents(ctx context.Context, be Backend, x Data, k int, seed int64) (*PCA, error) {
	return principalComponentsIn(ctx, passes{be: be, block: blockRowsOf(x)}, x, k, seed)
}

// principalComponentsIn is principalComponents with the passes' block size
// for a RowSource given (tests use small blocks).
func principalComponentsIn(ctx context.Context, ps passes, x Data, k int, seed int64) (*PCA, error) {
	be := ps.be
	n, d := x.N, x.D
	if k < 1 || k > min(n, d) {
		return nil, fmt.Errorf("pca: %d components of a %d×%d matrix", k, n, d)
	}
	l := min(k+pcaOversample, d, n)
	if h, ok := be.(DataHolder); ok && !x.streamed() {
		if release, err := h.Hold(ctx, x); err == nil {
			defer release()
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}

	means := make([]float64, d)
	if err := ps.columnMeans(ctx, x, means); err != nil {
		return nil, fmt.Errorf("pca: column means: %w", err)
	}
	mean32 := make([]float32, d)
	for i, m := range means {
		mean32[i] = float32(m)
	}

	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	omega := make([]float32, d*l)
	for i := range omega {
		omega[i] = float32(rng.NormFloat64())
	}

	ny := make([]float32, n*l) // N×l products
	dz := make([]float32, d*l) // D×l products
	if err := ps.mulRight(ctx, x, mean32, omega, l, ny); err != nil {
		return nil, fmt.Errorf("pca: sample range: %w", err)
	}
	q := orthonormalize(ny, n, l)
	iters := pcaPowerIterations
	if l == d {
		// Ω spans all of ℝᴰ, so Xc·Ω already spans Xc's column space:
		// subspace iteration cannot improve it.
		iters = 0
	}
	for range iters {
		toFloat32(dz, nil)
		if err := ps.mulTransLeft(ctx, x, mean32, toFloat32(ny, q), l, dz); err != nil {
			return nil, fmt.Errorf("pca: power iteration: %w", err)
		}
		qz := orthonormalize(dz, d, l)
		if err := ps.mulRight(ctx, x, mean32, toFloat32(dz, qz), l, ny); err != nil {
			return nil, fmt.Errorf("pca: power iteration: %w", err)
		}
		q = orthonormalize(ny, n, l)
	}
	// Z = Xcᵀ·Q (D×l). With B = Qᵀ·Xc = Zᵀ, the SVD B = U Σ Vᵀ gives the
	// principal axes V and scores Xc·V = Q·U·Σ. U and Σ² are the eigen
	// decomposition of B·Bᵀ = ZᵀZ, an l×l matrix: no pass over X is needed
	// for the scores.
	if err := ps.mulTransLeft(ctx, x, mean32, toFloat32(ny, q), l, dz); err != nil {
		return nil, fmt.Errorf("pca: project: %w", err)
	}
	z := mat.NewDense(d, l, nil)
	for i, v := range dz {
		z.RawMatrix().Data[i] = float64(v)
	}
	var g mat.SymDense
	g.SymOuterK(1, z.T())
	var eig mat.EigenSym
	if !eig.Factorize(&g, true) {
		return nil, fmt.Errorf("pca: eigen decomposition did not converge")
	}
	vals := eig.Values(nil) // ascending
	var vecs mat.Dense
	eig.VectorsTo(&vecs)

	// coef (l×k) = U[:, top k] · diag(σ), largest first.
	coef := mat.NewDense(l, k, nil)
	total := 0.0
	for _, v := range vals {
		total += max(v, 0)
	}
	variance := make([]float64, k)
	for c := range k {
		src := l - 1 - c
		sigma := math.Sqrt(max(vals[src], 0))
		if total > 0 {
			variance[c] = max(vals[src], 0) / total
		}
		for r := range l {
			coef.Set(r, c, vecs.At(r, src)*sigma)
		}
	}
	var scores mat.Dense
	scores.Mul(q, coef)
	raw := scores.RawMatrix()
	out := make([]float32, n*k)
	// Fix each component's sign (positive third moment) so the result does
	// not depend on the eigen solver's arbitrary choice of sign.
	signs := make([]float64, k)
	for c := range k {
		m3 := 0.0
		for r := range n {
			v := raw.Data[r*raw.Stride+c]
			m3 += v * v * v
		}
		s := 1.0
		if m3 < 0 {
			s = -1
		}
		signs[c] = s
		for r := range n {
			out[r*k+c] = float32(s * raw.Data[r*raw.Stride+c])
		}
	}
	axes := principalAxes(z, &vecs, vals, signs)
	return &PCA{K: k, Scores: out, Variance: variance, Mean: mean32, Axes: axes}, nil
}

// principalAxes returns the axes V (D×k, row-major, float32) with
// Xc·V = the scores: B = Qᵀ·Xc = U·Σ·Vᵀ gives V = Bᵀ·U·Σ⁻¹ = Z·U·Σ⁻¹ for
// Z = Xcᵀ·Q, with each column's sign as the scores'. A component without
// variance (σ = 0) gets a zero axis, as its scores are zero.
func principalAxes(z *mat.Dense, vecs *mat.Dense, vals []float64, signs []float64) []float32 {
	d, l := z.Dims()
	k := len(signs)
	u := mat.NewDense(l, k, nil)
	for c := range k {
		src := l - 1 - c
		sigma := math.Sqrt(max(vals[src], 0))
		if !(sigma > 0) {
			continue
		}
		for r := range l {
			u.Set(r, c, vecs.At(r, src)*signs[c]/sigma)
		}
	}
	var v mat.Dense
	v.Mul(z, u)
	out := make([]float32, d*k)
	for r := range d {
		for c := range k {
			out[r*k+c] = float32(v.At(r, c))
		}
	}
	return out
}

// orthonormalize returns an orthonormal basis (rows×cols, float64) of the
// columns of the float32 matrix a, by a thin Householder QR (LAPACK's
// geqrf then orgqr), never forming the rows×rows Q.
func orthonormalize(a []float32, rows, cols int) *mat.Dense {
	g := blas64.General{Rows: rows, Cols: cols, Stride: cols, Data: make([]float64, rows*cols)}
	for i, v := range a {
		g.Data[i] = float64(v)
	}
	tau := make([]float64, cols)
	work := []float64{0}
	lapack64.Geqrf(g, tau, work, -1)
	work = make([]float64, max(int(work[0]), cols))
	lapack64.Geqrf(g, tau, work, len(work))
	lapack64.Orgqr(g, tau, work, -1)
	if int(work[0]) > len(work) {
		work = make([]float64, int(work[0]))
	}
	lapack64.Orgqr(g, tau, work, len(work))
	return mat.NewDense(rows, cols, g.Data)
}

// toFloat32 copies m into dst (row-major, same shape) and returns dst; a nil
// m zeroes dst.
func toFloat32(dst []float32, m *mat.Dense) []float32 {
	if m == nil {
		clear(dst)
		return dst
	}
	raw := m.RawMatrix()
	r, c := m.Dims()
	for i := range r {
		row := raw.Data[i*raw.Stride : i*raw.Stride+c]
		for j, v := range row {
			dst[i*c+j] = float32(v)
		}
	}
	return dst
}
