package embed

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// randomNeighbors makes a Neighbors of n points with k sorted random
// distances drawn from several scales, and random distinct neighbour ids.
func randomNeighbors(n, k int, seed uint64) *Neighbors {
	rng := rand.New(rand.NewPCG(seed, 1))
	nb := &Neighbors{N: n, K: k, Index: make([]int32, n*k), Dist2: make([]float32, n*k)}
	for i := range n {
		scale := math.Pow(10, rng.Float64()*6-3)
		row := nb.Dist2[i*k : (i+1)*k]
		for j := range row {
			row[j] = float32(scale * rng.ExpFloat64())
		}
		slices.Sort(row)
		perm := rng.Perm(n - 1)
		for j := range k {
			c := perm[j]
			if c >= i {
				c++
			}
			nb.Index[i*k+j] = int32(c)
		}
	}
	return nb
}

func rowEntropy(p []float64) float64 {
	h := 0.0
	for _, v := range p {
		if v > 0 {
			h -= v * math.Log(v)
		}
	}
	return h
}

func TestCalibrateHitsPerplexity(t *testing.T) {
	for _, perp := range []float64{2, 5, 30, 50} {
		k := int(3 * perp)
		nb := randomNeighbors(2000, k, uint64(perp))
		cond, beta, err := calibrate(context.Background(), nb, perp, 2)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := range nb.N {
			p := cond[i*k : (i+1)*k]
			sum := 0.0
			for _, v := range p {
				sum += v
			}
			if math.Abs(sum-1) > 1e-12 {
				t.Fatalf("perplexity %v row %d sums to %v", perp, i, sum)
			}
			worst = max(worst, math.Abs(rowEntropy(p)-math.Log(perp)))
			if !(beta[i] > 0) {
				t.Fatalf("row %d: beta %v", i, beta[i])
			}
		}
		if worst >= PerplexityTolerance {
			t.Errorf("perplexity %v: worst entropy error %.3g ≥ %g", perp, worst, PerplexityTolerance)
		}
	}
}

func TestCalibrateDegenerateRows(t *testing.T) {
	// All neighbours at one distance (duplicate points): uniform, no NaN.
	nb := &Neighbors{N: 5, K: 4, Index: make([]int32, 20), Dist2: make([]float32, 20)}
	for i := range 5 {
		for j := range 4 {
			nb.Index[i*4+j] = int32((i + j + 1) % 5)
		}
	}
	cond, _, err := calibrate(context.Background(), nb, 1.2, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range cond {
		if v != 0.25 {
			t.Fatalf("want uniform 0.25, got %v", cond)
		}
	}
}

func TestSymmetrize(t *testing.T) {
	nb := randomNeighbors(500, 20, 7)
	cond, _, err := calibrate(context.Background(), nb, 6, 2)
	if err != nil {
		t.Fatal(err)
	}
	p, err := symmetrize(context.Background(), nb, cond, 2)
	if err != nil {
		t.Fatal(err)
	}
	dense := make([]float64, p.N*p.N)
	sum := 0.0
	for i := range p.N {
		for e := p.RowPtr[i]; e < p.RowPtr[i+1]; e++ {
			if e > p.RowPtr[i] && p.Col[e] <= p.Col[e-1] {
				t.Fatalf("row %d columns not strictly increasing", i)
			}
			if int(p.Col[e]) == i {
				t.Fatalf("row %d has a diagonal entry", i)
			}
			dense[i*p.N+int(p.Col[e])] = float64(p.Val[e])
			sum += float64(p.Val[e])
		}
	}
	if math.Abs(sum-1) > 1e-5 {
		t.Errorf("P sums to %v, want 1", sum)
	}
	// Against the definition: p_ij = (p_j|i + p_i|j) / 2N.
	want := make([]float64, p.N*p.N)
	for i := range nb.N {
		for t2 := range nb.K {
			j := int(nb.Index[i*nb.K+t2])
			want[i*p.N+j] += cond[i*nb.K+t2] / (2 * float64(p.N))
			want[j*p.N+i] += cond[i*nb.K+t2] / (2 * float64(p.N))
		}
	}
	for i := range want {
		if math.Abs(want[i]-dense[i]) > 1e-6*want[i]+1e-12 {
			t.Fatalf("entry %d: got %v want %v", i, dense[i], want[i])
		}
		if dense[i] != dense[(i%p.N)*p.N+i/p.N] {
			t.Fatalf("P not symmetric at %d", i)
		}
	}
}

func TestAffinitiesCancel(t *testing.T) {
	nb := randomNeighbors(3000, 30, 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := calibrate(ctx, nb, 10, 2); err != context.Canceled {
		t.Errorf("calibrate: got %v, want context.Canceled", err)
	}
}

// Run's path (shares stored over the distances, no float64 conditional
// probabilities kept) gives the same P, bit for bit, as calibrate then
// symmetrize, whatever the thread count.
func TestCalibrateSharesGivesTheSameP(t *testing.T) {
	tests := []struct{ n, k, threads int }{{500, 20, 2}, {300, 7, 1}, {50, 49, 3}}
	for _, tc := range tests {
		nb := randomNeighbors(tc.n, tc.k, 11)
		cond, _, err := calibrate(context.Background(), nb, 5, tc.threads)
		if err != nil {
			t.Fatal(err)
		}
		want, err := symmetrize(context.Background(), nb, cond, tc.threads)
		if err != nil {
			t.Fatal(err)
		}
		if err := calibrateShares(context.Background(), nb, 5, tc.threads); err != nil {
			t.Fatal(err)
		}
		got, err := symmetrizeShares(context.Background(), nb, nb.Dist2, tc.threads)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.RowPtr, want.RowPtr) || !slices.Equal(got.Col, want.Col) || !slices.Equal(got.Val, want.Val) {
			t.Errorf("N=%d K=%d threads %d: P differs", tc.n, tc.k, tc.threads)
		}
	}
}
