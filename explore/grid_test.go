package explore

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// TestLapIsOptimal checks the assignment against every assignment of small
// random problems, square and rectangular.
func TestLapIsOptimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 300 {
		n := 1 + trial%6
		m := n + trial%3
		c := make([]float64, n*m)
		for i := range c {
			c[i] = math.Floor(rng.Float64() * 20) // ties on purpose
		}
		got, err := lap(context.Background(), n, m, func(i, j int) float64 { return c[i*m+j] })
		if err != nil {
			t.Fatal(err)
		}
		used := map[int]bool{}
		var total float64
		for i, j := range got {
			if j < 0 || j >= m || used[j] {
				t.Fatalf("trial %d: row %d gets column %d (%v)", trial, i, j, got)
			}
			used[j] = true
			total += c[i*m+j]
		}
		if best := bruteForce(c, n, m, 0, make([]bool, m)); total != best {
			t.Fatalf("trial %d (%d×%d): cost %v, optimum %v", trial, n, m, total, best)
		}
	}
}

func bruteForce(c []float64, n, m, row int, used []bool) float64 {
	if row == n {
		return 0
	}
	best := math.Inf(1)
	for j := range m {
		if !used[j] {
			used[j] = true
			best = min(best, c[row*m+j]+bruteForce(c, n, m, row+1, used))
			used[j] = false
		}
	}
	return best
}

// TestGridKeepsNeighbours: every point gets a distinct cell inside the
// grid, and the layout keeps far more of the 10 nearest neighbours than a
// random assignment of the same cells, exact or split in parts.
func TestGridKeepsNeighbours(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n        int
		exactMax int
		minKept  float64
	}{
		{"exact, 600 points", 600, 600, 0.35},
		{"split in parts, 5000 points", 5000, exactGridMax, 0.35},
		{"exact, 7 points", 7, exactGridMax, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xy := tsneLike(tc.n, 5)
			cells, err := grid(context.Background(), xy, tc.exactMax)
			if err != nil {
				t.Fatal(err)
			}
			cols, rows := 0, 0
			seen := map[Cell]int{}
			for i, c := range cells {
				if j, dup := seen[c]; dup {
					t.Fatalf("points %d and %d share cell %v", j, i, c)
				}
				seen[c] = i
				cols, rows = max(cols, c.X+1), max(rows, c.Y+1)
			}
			if cols*rows < tc.n || cols*rows > tc.n+cols+rows || cells[0].X < 0 {
				t.Errorf("grid %d×%d for %d points", cols, rows, tc.n)
			}
			kept := NeighboursKept(xy, cells, 10)
			shuffled := append([]Cell(nil), cells...)
			rand.New(rand.NewPCG(1, 1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			random := NeighboursKept(xy, shuffled, 10)
			t.Logf("10-NN kept: %.3f (random assignment %.4f)", kept, random)
			if tc.n > 10 && (kept < tc.minKept || kept < 20*random) {
				t.Errorf("10-NN kept %.3f, random %.4f: want ≥ %.2f and ≥ 20× random", kept, random, tc.minKept)
			}
		})
	}
}

// TestGridSplitKeepsQuality: splitting into parts keeps about the
// fraction of neighbours that one exact assignment keeps.
func TestGridSplitKeepsQuality(t *testing.T) {
	xy := tsneLike(1500, 8)
	exact, err := grid(context.Background(), xy, 1500)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := grid(context.Background(), xy, exactGridMax)
	if err != nil {
		t.Fatal(err)
	}
	ke, kp := NeighboursKept(xy, exact, 10), NeighboursKept(xy, parts, 10)
	t.Logf("10-NN kept: exact %.3f, in parts of %d %.3f", ke, exactGridMax, kp)
	if kp < ke-0.03 {
		t.Errorf("parts keep %.3f of 10-NN, exact %.3f", kp, ke)
	}
}

func TestGridRejectsNaN(t *testing.T) {
	if _, err := Grid(context.Background(), []float64{0, 0, 1, math.Inf(1)}); err == nil {
		t.Error("infinite coordinate: no error")
	}
}

// BenchmarkGrid10k is the target: ≤ 10 s for 10,000 points on the
// 2-core machine. It reports the fraction of 10-NN kept.
func BenchmarkGrid10k(b *testing.B) {
	benchGrid(b, 10_000)
}

// BenchmarkGrid100k: a big map, for scale.
func BenchmarkGrid100k(b *testing.B) {
	benchGrid(b, 100_000)
}

func benchGrid(b *testing.B, n int) {
	xy := tsneLike(n, 1)
	var cells []Cell
	for b.Loop() {
		var err error
		if cells, err = Grid(context.Background(), xy); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(NeighboursKept(xy, cells, 10), "10NN-kept")
}
