package embed

import (
	"context"
	"fmt"
	"math"
)

// RowSource holds the N×D uint8 rows of a Data that is too large to keep in
// memory: 100,000 images of 100×100 RGB are 3 GB of pixels, more than the
// rest of a run needs together. A run reads them only in blocks of rows, so
// a source may keep them on disk (package internal/rowspool spools them to
// a temporary file and reads them back with pread).
type RowSource interface {
	// ReadRows copies the rows lo, lo+1, … into dst, which holds a whole
	// number of rows (len(dst)/D of them, all < N). An error names what
	// failed (the file's path); ctx.Err() when cancelled.
	ReadRows(ctx context.Context, lo int, dst []uint8) error
}

// rowBlockBytes bounds the block of rows a pass over a RowSource reads at a
// time (one buffer, reused): large enough that the backend's kernels run on
// thousands of rows per call, small against the pixels themselves.
const rowBlockBytes = 64 << 20

// rowBlockAlign keeps blocks a multiple of the CPU kernels' inner block
// (cpu's kcBlock), so a streamed MulTransLeft sums the same tiles as one
// over the whole matrix and differs only by rounding each block's partial
// sum to float32 before adding it in float64.
const rowBlockAlign = 256

// blockRows is how many rows of d bytes one block of a RowSource holds:
// about rowBlockBytes, a multiple of rowBlockAlign, at least one row.
func blockRows(d int) int {
	return alignedRows(rowBlockBytes / max(d, 1))
}

// blockRowsOf is blockRows for x: a quarter as many rows when they are
// passed on as float32 (x.unit), so that buffer too is about rowBlockBytes.
func blockRowsOf(x Data) int {
	if x.unit {
		return alignedRows(rowBlockBytes / 4 / max(x.D, 1))
	}
	return blockRows(x.D)
}

// alignedRows is r rounded down to a multiple of rowBlockAlign when it is
// at least that, and at least 1.
func alignedRows(r int) int {
	if r >= rowBlockAlign {
		r -= r % rowBlockAlign
	}
	return max(r, 1)
}

// eachBlock calls f on each block of rows [lo, lo+blk.N) of x, read from
// its RowSource into one reused buffer of at most rows rows, or sliced from
// U8. When x.unit, each block is passed on as float32 rows scaled to unit
// length (one more reused buffer) and a row of zeros is an error naming
// it. x must have Rows or U8 set.
func eachBlock(ctx context.Context, x Data, rows int, f func(lo int, blk Data) error) error {
	rows = max(1, min(rows, x.N))
	var buf []uint8
	if x.Rows != nil {
		buf = make([]uint8, rows*x.D)
	}
	var unit []float32
	if x.unit {
		unit = make([]float32, rows*x.D)
	}
	for lo := 0; lo < x.N; lo += rows {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := min(rows, x.N-lo)
		blk := Data{N: r, D: x.D}
		if x.Rows != nil {
			blk.U8 = buf[:r*x.D]
			if err := x.Rows.ReadRows(ctx, lo, blk.U8); err != nil {
				return fmt.Errorf("read rows %d to %d: %w", lo, lo+r, err)
			}
		} else {
			blk.U8 = x.U8[lo*x.D : (lo+r)*x.D]
		}
		if x.unit {
			if err := unitRows(blk, unit[:r*x.D], lo); err != nil {
				return err
			}
			blk = Data{N: r, D: x.D, F32: unit[:r*x.D]}
		}
		if err := f(lo, blk); err != nil {
			return err
		}
	}
	return nil
}

// passes runs the PCA products on a backend, reading a RowSource in
// blocks of block rows (blockRows(D) but in tests).
type passes struct {
	be    Backend
	block int
}

// columnMeans is be.ColumnMeans over x, in blocks when x is a RowSource.
// A block of pixels' means times its rows give its column sums back
// exactly (they are integers far below 2⁵³), so the means are the
// in-memory ones; unit rows' sums are added as they come.
func (ps passes) columnMeans(ctx context.Context, x Data, dst []float64) error {
	if !x.streamed() {
		return ps.be.ColumnMeans(ctx, x, dst)
	}
	sums := make([]float64, x.D)
	part := make([]float64, x.D)
	err := eachBlock(ctx, x, ps.block, func(_ int, blk Data) error {
		if err := ps.be.ColumnMeans(ctx, blk, part); err != nil {
			return err
		}
		for j, m := range part {
			if x.unit {
				sums[j] += m * float64(blk.N)
			} else {
				sums[j] += math.Round(m * float64(blk.N))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for j, s := range sums {
		dst[j] = s / float64(x.N)
	}
	return nil
}

// mulRight is be.MulRight over x, in blocks when x is a RowSource. Each
// output row depends on its input row alone, so blocks give the in-memory
// result.
func (ps passes) mulRight(ctx context.Context, x Data, mean, b []float32, l int, dst []float32) error {
	if !x.streamed() {
		return ps.be.MulRight(ctx, x, mean, b, l, dst)
	}
	if len(dst) != x.N*l {
		return fmt.Errorf("%w: dst has %d values, want %d×%d", ErrInvalidInput, len(dst), x.N, l)
	}
	return eachBlock(ctx, x, ps.block, func(lo int, blk Data) error {
		return ps.be.MulRight(ctx, blk, mean, b, l, dst[lo*l:(lo+blk.N)*l])
	})
}

// mulTransLeft is be.MulTransLeft over x, in blocks when x is a RowSource:
// the blocks' partial products (D×l each) are added in float64, then
// rounded once. Each partial is rounded to float32 by the backend, so the
// result differs from the in-memory one by at most about one float32
// rounding per block of each partial's magnitude.
func (ps passes) mulTransLeft(ctx context.Context, x Data, mean, b []float32, l int, dst []float32) error {
	if !x.streamed() {
		return ps.be.MulTransLeft(ctx, x, mean, b, l, dst)
	}
	if len(b) != x.N*l || len(dst) != x.D*l {
		return fmt.Errorf("%w: product of %d×%d data with %d values into %d", ErrInvalidInput, x.N, x.D, len(b), len(dst))
	}
	acc := make([]float64, len(dst))
	part := make([]float32, len(dst))
	err := eachBlock(ctx, x, ps.block, func(lo int, blk Data) error {
		if err := ps.be.MulTransLeft(ctx, blk, mean, b[lo*l:(lo+blk.N)*l], l, part); err != nil {
			return err
		}
		for i, v := range part {
			acc[i] += float64(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i, v := range acc {
		dst[i] = float32(v)
	}
	return nil
}
