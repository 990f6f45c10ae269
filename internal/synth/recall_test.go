package synth

import (
	"math"
	"testing"
)

func TestKNNRecall(t *testing.T) {
	// Points on a line at 0, 1, 2, …: the k nearest of i are its closest
	// integers, ties to the lower index.
	const n, k = 200, 4
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i)
	}
	exact := make([]int32, n*k)
	for i := range n {
		var row []int32
		for off := 1; len(row) < k; off++ {
			if i-off >= 0 {
				row = append(row, int32(i-off))
			}
			if len(row) < k && i+off < n {
				row = append(row, int32(i+off))
			}
		}
		copy(exact[i*k:], row)
	}
	half := append([]int32(nil), exact...)
	for i := range n {
		// Replace the last two of each row by far points.
		half[i*k+2] = int32((i + n/2) % n)
		half[i*k+3] = int32((i + n/2 + 1) % n)
	}
	for _, c := range []struct {
		name string
		idx  []int32
		want float64
	}{
		{"exact", exact, 1},
		{"half", half, 0.5},
	} {
		if got := KNNRecall(x, 1, c.idx, k, 50); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: recall %v, want %v", c.name, got, c.want)
		}
	}
}
