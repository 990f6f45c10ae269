package cpu

import "context"

// exactRepulsion evaluates every pair: O(N²), the reference of the
// approximations and the fastest method for small N. Each row i sums over all
// j (both halves of the symmetric kernel matrix), which doubles the kernel
// evaluations but lets rows run in parallel without any shared writes.
type exactRepulsion struct {
	b       *Backend
	n, dims int
	part    []float64
}

// exactRowBlock is the number of rows that share one pass over all points:
// each y_j loaded is used four times.
const exactRowBlock = 4

func (r *exactRepulsion) repulse(ctx context.Context, y []float32, rep []float64) (float64, error) {
	n, dims := r.n, r.dims
	cs := r.b.chunks(n, 16)
	if cap(r.part) < len(cs) {
		r.part = make([]float64, len(cs))
	}
	part := r.part[:len(cs)]
	err := r.b.parallelFor(ctx, n, 16, func(c, lo, hi int) {
		z := 0.0
		for i0 := lo; i0 < hi; i0 += exactRowBlock {
			if ctx.Err() != nil {
				return
			}
			i1 := min(i0+exactRowBlock, hi)
			if dims == 2 {
				z += exactRows2(y, n, i0, i1, rep)
			} else {
				z += exactRows3(y, n, i0, i1, rep)
			}
		}
		part[c] = z
	})
	if err != nil {
		return 0, err
	}
	z := 0.0
	for _, s := range part {
		z += s
	}
	return z, nil
}

// exactRows2 sums rows [i0, i1) (at most exactRowBlock) over all points in
// 2-D and returns their share of Z. The self term (w = 1, zero force) is
// subtracted at the end instead of tested for in the inner loop.
func exactRows2(y []float32, n, i0, i1 int, rep []float64) float64 {
	var xs, ys [exactRowBlock]float64
	var fx, fy, zs [exactRowBlock]float64
	m := i1 - i0
	for k := range m {
		xs[k] = float64(y[2*(i0+k)])
		ys[k] = float64(y[2*(i0+k)+1])
	}
	if m == exactRowBlock {
		x0, x1, x2, x3 := xs[0], xs[1], xs[2], xs[3]
		y0, y1, y2, y3 := ys[0], ys[1], ys[2], ys[3]
		var fx0, fx1, fx2, fx3, fy0, fy1, fy2, fy3, z0, z1, z2, z3 float64
		yy := y[:2*n]
		for j := 0; j+1 < len(yy); j += 2 {
			xj, yj := float64(yy[j]), float64(yy[j+1])
			dx0, dy0 := x0-xj, y0-yj
			dx1, dy1 := x1-xj, y1-yj
			dx2, dy2 := x2-xj, y2-yj
			dx3, dy3 := x3-xj, y3-yj
			w0 := 1 / (1 + dx0*dx0 + dy0*dy0)
			w1 := 1 / (1 + dx1*dx1 + dy1*dy1)
			w2 := 1 / (1 + dx2*dx2 + dy2*dy2)
			w3 := 1 / (1 + dx3*dx3 + dy3*dy3)
			z0 += w0
			z1 += w1
			z2 += w2
			z3 += w3
			w0 *= w0
			w1 *= w1
			w2 *= w2
			w3 *= w3
			fx0 += w0 * dx0
			fy0 += w0 * dy0
			fx1 += w1 * dx1
			fy1 += w1 * dy1
			fx2 += w2 * dx2
			fy2 += w2 * dy2
			fx3 += w3 * dx3
			fy3 += w3 * dy3
		}
		fx = [4]float64{fx0, fx1, fx2, fx3}
		fy = [4]float64{fy0, fy1, fy2, fy3}
		zs = [4]float64{z0, z1, z2, z3}
	} else {
		for k := range m {
			xi, yi := xs[k], ys[k]
			for j := range n {
				dx, dy := xi-float64(y[2*j]), yi-float64(y[2*j+1])
				w := 1 / (1 + dx*dx + dy*dy)
				zs[k] += w
				w *= w
				fx[k] += w * dx
				fy[k] += w * dy
			}
		}
	}
	z := 0.0
	for k := range m {
		rep[2*(i0+k)] = fx[k]
		rep[2*(i0+k)+1] = fy[k]
		z += zs[k] - 1
	}
	return z
}

// exactRows3 is exactRows2 in 3-D, one row at a time.
func exactRows3(y []float32, n, i0, i1 int, rep []float64) float64 {
	z := 0.0
	for i := i0; i < i1; i++ {
		xi, yi, zi := float64(y[3*i]), float64(y[3*i+1]), float64(y[3*i+2])
		var f0, f1, f2, s float64
		for j := range n {
			d0 := xi - float64(y[3*j])
			d1 := yi - float64(y[3*j+1])
			d2 := zi - float64(y[3*j+2])
			w := 1 / (1 + d0*d0 + d1*d1 + d2*d2)
			s += w
			w *= w
			f0 += w * d0
			f1 += w * d1
			f2 += w * d2
		}
		rep[3*i], rep[3*i+1], rep[3*i+2] = f0, f1, f2
		z += s - 1
	}
	return z
}

// exactZ is Σ_{i≠j} w_ij over the pairs i < j (half the work of
// exactRepulsion), for KL at small N.
type exactZ struct {
	b       *Backend
	n, dims int
	part    []float64
}

func (e *exactZ) z(ctx context.Context, y []float32) (float64, error) {
	n, dims := e.n, e.dims
	// Row i costs n−i−1 evaluations; fine chunks balance the triangle.
	cs := e.b.chunks(n, 8)
	if cap(e.part) < len(cs) {
		e.part = make([]float64, len(cs))
	}
	part := e.part[:len(cs)]
	err := e.b.parallelFor(ctx, n, 8, func(c, lo, hi int) {
		s := 0.0
		for i := lo; i < hi; i++ {
			if dims == 2 {
				xi, yi := float64(y[2*i]), float64(y[2*i+1])
				for j := i + 1; j < n; j++ {
					dx, dy := xi-float64(y[2*j]), yi-float64(y[2*j+1])
					s += 1 / (1 + dx*dx + dy*dy)
				}
			} else {
				xi, yi, zi := float64(y[3*i]), float64(y[3*i+1]), float64(y[3*i+2])
				for j := i + 1; j < n; j++ {
					d0 := xi - float64(y[3*j])
					d1 := yi - float64(y[3*j+1])
					d2 := zi - float64(y[3*j+2])
					s += 1 / (1 + d0*d0 + d1*d1 + d2*d2)
				}
			}
		}
		part[c] = s
	})
	if err != nil {
		return 0, err
	}
	z := 0.0
	for _, s := range part {
		z += s
	}
	return 2 * z, nil
}
