package cpu

import (
	"context"
	"fmt"

	"github.com/tsnemap/tsnemap/embed"
)

// The products (X − 1·meanᵀ)·M and (X − 1·meanᵀ)ᵀ·M are the passes of a
// randomized SVD (Halko, Martinsson & Tropp 2011, "Finding structure with
// randomness", algorithm 4.4). X may be 3 GB of uint8 pixels, so it is never
// converted whole: each mr×kc block of it is converted to float32 and centred
// while it is packed for the micro-kernel, and lives only in a small
// per-goroutine buffer.
//
// Accuracy: each tile sums at most kc float32 products (one rounding per
// FMA), and the tiles along the inner dimension are added in float64, so
// every output element is within about (kc+2)·u·Σ_t |x_t − mean_t|·|m_t| of
// the exact value (u = 2⁻²⁴), independent of the inner dimension D or N.
const (
	kcBlock = 256 // inner-dimension block: an mr×kc A panel (6 KB) stays in L1
	mcBlock = 96  // rows per block of mulRight: its kc×64 B block (64 KB) is reused by 16 A panels
)

// checkData validates x against its declared shape.
func checkData(x embed.Data) error {
	switch {
	case x.N < 1 || x.D < 1:
		return fmt.Errorf("%w: data is %d×%d", embed.ErrInvalidInput, x.N, x.D)
	case (x.U8 == nil) == (x.F32 == nil):
		return fmt.Errorf("%w: exactly one of U8 and F32 must be set", embed.ErrInvalidInput)
	case x.U8 != nil && len(x.U8) != x.N*x.D:
		return fmt.Errorf("%w: U8 has %d values, want %d×%d", embed.ErrInvalidInput, len(x.U8), x.N, x.D)
	case x.F32 != nil && len(x.F32) != x.N*x.D:
		return fmt.Errorf("%w: F32 has %d values, want %d×%d", embed.ErrInvalidInput, len(x.F32), x.N, x.D)
	}
	return nil
}

func columnMeans(ctx context.Context, b *Backend, x embed.Data, dst []float64) error {
	if err := checkData(x); err != nil {
		return fmt.Errorf("cpu: column means: %w", err)
	}
	if len(dst) != x.D {
		return fmt.Errorf("cpu: column means: %w: dst has %d values, want D = %d", embed.ErrInvalidInput, len(dst), x.D)
	}
	n, d := x.N, x.D
	// Partial sums per chunk of rows, added in chunk order: deterministic
	// for a thread count. uint8 sums are integers and therefore exact.
	grain := max(1, 1<<16/d)
	// a cancel is seen within about a million values read
	rowsPerCheck := max(1, 1<<20/d)
	partial := make([][]float64, len(b.chunks(n, grain)))
	err := b.parallelFor(ctx, n, grain, func(c, lo, hi int) {
		s := make([]float64, d)
		if x.U8 != nil {
			iu := make([]uint64, d)
			for r := lo; r < hi; r++ {
				if (r-lo)%rowsPerCheck == 0 && ctx.Err() != nil {
					return
				}
				row := x.U8[r*d : r*d+d]
				for j, v := range row {
					iu[j] += uint64(v)
				}
			}
			for j, v := range iu {
				s[j] = float64(v)
			}
		} else {
			for r := lo; r < hi; r++ {
				if (r-lo)%rowsPerCheck == 0 && ctx.Err() != nil {
					return
				}
				row := x.F32[r*d : r*d+d]
				for j, v := range row {
					s[j] += float64(v)
				}
			}
		}
		partial[c] = s
	})
	if err != nil {
		return err
	}
	clear(dst)
	for _, s := range partial {
		for j, v := range s {
			dst[j] += v
		}
	}
	for j := range dst {
		dst[j] /= float64(n)
	}
	return nil
}

// checkProduct validates the arguments shared by mulRight and mulTransLeft:
// m must have inner×l values and dst outer×l.
func checkProduct(op string, x embed.Data, mean, m []float32, l int, dst []float32, inner, outer int) error {
	if err := checkData(x); err != nil {
		return fmt.Errorf("cpu: %s: %w", op, err)
	}
	switch {
	case len(mean) != x.D:
		return fmt.Errorf("cpu: %s: %w: mean has %d values, want D = %d", op, embed.ErrInvalidInput, len(mean), x.D)
	case l < 1:
		return fmt.Errorf("cpu: %s: %w: l = %d, want ≥ 1", op, embed.ErrInvalidInput, l)
	case len(m) != inner*l:
		return fmt.Errorf("cpu: %s: %w: matrix has %d values, want %d×%d", op, embed.ErrInvalidInput, len(m), inner, l)
	case len(dst) != outer*l:
		return fmt.Errorf("cpu: %s: %w: dst has %d values, want %d×%d", op, embed.ErrInvalidInput, len(dst), outer, l)
	}
	return nil
}

// packPanels copies rows [r0, r0+rows) of the row-major matrix m (l columns)
// into nr-wide column panels: panel p at dst[p*rows*nr:], element (t, j) at
// t*nr+j, zero past column l.
func packPanels(m []float32, l, r0, rows int, dst []float32) {
	np := (l + nr - 1) / nr
	for p := range np {
		pd := dst[p*rows*nr : (p+1)*rows*nr]
		c0, c1 := p*nr, min(l, p*nr+nr)
		for t := range rows {
			row := m[(r0+t)*l : (r0+t)*l+l]
			seg := pd[t*nr : t*nr+nr]
			n := copy(seg, row[c0:c1])
			clear(seg[n:])
		}
	}
}

// addTile adds the first rows×cols of tile into acc (row stride ld).
func addTile(acc []float64, ld int, tile *[mr * nr]float32, rows, cols int) {
	for i := range rows {
		ai := acc[i*ld : i*ld+cols]
		ti := tile[i*nr : i*nr+cols]
		for j, v := range ti {
			ai[j] += float64(v)
		}
	}
}

func mulRight(ctx context.Context, b *Backend, x embed.Data, mean, m []float32, l int, dst []float32) error {
	return mulRightWith(ctx, b, defaultKernels(), x, mean, m, l, dst)
}

func mulRightWith(ctx context.Context, b *Backend, kern tileKernels, x embed.Data, mean, m []float32, l int, dst []float32) error {
	if err := checkProduct("mulRight", x, mean, m, l, dst, x.D, x.N); err != nil {
		return err
	}
	n, d := x.N, x.D
	np := (l + nr - 1) / nr
	lp := np * nr
	// M is packed once and shared read-only by every goroutine.
	bp := make([]float32, np*d*nr)
	packPanels(m, l, 0, d, bp)

	return b.parallelFor(ctx, n, mcBlock, func(_, lo, hi int) {
		ap := make([]float32, kcBlock*mr)
		acc := make([]float64, mcBlock*lp)
		var tile [mr * nr]float32
		for r0 := lo; r0 < hi; r0 += mcBlock {
			if ctx.Err() != nil {
				return
			}
			rows := min(mcBlock, hi-r0)
			clear(acc[:rows*lp])
			for k0 := 0; k0 < d; k0 += kcBlock {
				kk := min(kcBlock, d-k0)
				for i0 := 0; i0 < rows; i0 += mr {
					ir := min(mr, rows-i0)
					packRowsCentred(x, mean, r0+i0, ir, k0, kk, ap)
					for p := range np {
						kern.gemm(kk, ap, bp[p*d*nr+k0*nr:], &tile)
						addTile(acc[i0*lp+p*nr:], lp, &tile, ir, nr)
					}
				}
			}
			for i := range rows {
				out := dst[(r0+i)*l : (r0+i)*l+l]
				for j := range out {
					out[j] = float32(acc[i*lp+j])
				}
			}
		}
	})
}

// packRowsCentred packs rows [r, r+ir) and columns [k0, k0+kk) of X − mean
// as an A panel: ap[t*mr+i]; rows past ir are zero.
func packRowsCentred(x embed.Data, mean []float32, r, ir, k0, kk int, ap []float32) {
	d := x.D
	ap = ap[:kk*mr]
	if ir < mr {
		clear(ap)
	}
	mu := mean[k0 : k0+kk]
	for i := range ir {
		off := (r+i)*d + k0
		if x.U8 != nil {
			row := x.U8[off : off+kk]
			for t, v := range row {
				ap[t*mr+i] = float32(v) - mu[t]
			}
		} else {
			row := x.F32[off : off+kk]
			for t, v := range row {
				ap[t*mr+i] = v - mu[t]
			}
		}
	}
}

func mulTransLeft(ctx context.Context, b *Backend, x embed.Data, mean, m []float32, l int, dst []float32) error {
	return mulTransLeftWith(ctx, b, defaultKernels(), x, mean, m, l, dst)
}

func mulTransLeftWith(ctx context.Context, b *Backend, kern tileKernels, x embed.Data, mean, m []float32, l int, dst []float32) error {
	if err := checkProduct("mulTransLeft", x, mean, m, l, dst, x.N, x.D); err != nil {
		return err
	}
	n, d := x.N, x.D
	np := (l + nr - 1) / nr
	lp := np * nr
	// Each goroutine owns a range of columns of X (rows of dst) and walks
	// all rows of X in kc blocks, so no two goroutines write the same output
	// and every output is summed in the same order whatever the thread count.
	return b.parallelFor(ctx, d, mr*16, func(_, lo, hi int) {
		cols := hi - lo
		acc := make([]float64, cols*lp)
		ap := make([]float32, kcBlock*mr)
		bp := make([]float32, np*kcBlock*nr)
		var tile [mr * nr]float32
		for k0 := 0; k0 < n; k0 += kcBlock {
			if ctx.Err() != nil {
				return
			}
			kk := min(kcBlock, n-k0)
			packPanels(m, l, k0, kk, bp)
			for c0 := 0; c0 < cols; c0 += mr {
				ic := min(mr, cols-c0)
				packColsCentred(x, mean, k0, kk, lo+c0, ic, ap)
				for p := range np {
					kern.gemm(kk, ap, bp[p*kk*nr:], &tile)
					addTile(acc[c0*lp+p*nr:], lp, &tile, ic, nr)
				}
			}
		}
		for c := range cols {
			out := dst[(lo+c)*l : (lo+c)*l+l]
			for j := range out {
				out[j] = float32(acc[c*lp+j])
			}
		}
	})
}

// packColsCentred packs rows [k0, k0+kk) and columns [c, c+ic) of X − mean,
// transposed, as an A panel: ap[t*mr+i] = X[k0+t][c+i] − mean[c+i].
func packColsCentred(x embed.Data, mean []float32, k0, kk, c, ic int, ap []float32) {
	d := x.D
	ap = ap[:kk*mr]
	if ic < mr {
		clear(ap)
	}
	mu := mean[c : c+ic]
	for t := range kk {
		off := (k0+t)*d + c
		at := ap[t*mr : t*mr+ic]
		if x.U8 != nil {
			row := x.U8[off : off+ic]
			for i, v := range row {
				at[i] = float32(v) - mu[i]
			}
		} else {
			row := x.F32[off : off+ic]
			for i, v := range row {
				at[i] = v - mu[i]
			}
		}
	}
}
