package cpu

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/embed"
)

// BenchmarkStep measures one Step (attraction + repulsion + update) on
// clustered data with ~90 neighbours a point, at a compact embedding as early
// in a run ("early", extent ~5) and a spread one as late in a run ("late",
// extent ~20 at 2,000 points up to ~80 at 70,000).
func BenchmarkStep(b *testing.B) {
	methods := []struct {
		name string
		m    embed.Repulsion
	}{{"exact", embed.RepulsionExact}, {"bh", embed.RepulsionBarnesHut}, {"fft", embed.RepulsionFFT}, {"auto", embed.RepulsionAuto}}
	for _, n := range []int{2000, 10000, 70000} {
		var tp *testProblem
		problem := func() *testProblem {
			if tp == nil {
				tp = newTestProblem(n, 5, 30, 90, 99)
			}
			return tp
		}
		late := map[int]float64{2000: 10, 10000: 20, 70000: 40}[n]
		for _, dims := range []int{2, 3} {
			for _, m := range methods {
				if m.m == embed.RepulsionFFT && dims == 3 || m.m == embed.RepulsionExact && n > 10000 {
					continue
				}
				for _, phase := range []struct {
					name   string
					radius float64
				}{{"early", 2}, {"late", late}} {
					b.Run(fmt.Sprintf("%s/%dd/%d/%s", m.name, dims, n, phase.name), func(b *testing.B) {
						tp := problem()
						y0 := spreadY(tp, dims, phase.radius, 5)
						o, err := newOptimizer(context.Background(), New(0), tp.p, y0, embed.OptimizerConfig{N: n, Dims: dims, Repulsion: m.m, Theta: 0.5})
						if err != nil {
							b.Fatal(err)
						}
						// Tiny steps keep the layout as it is.
						params := embed.StepParams{Exaggeration: 1, Momentum: 0, LearningRate: 1e-6}
						b.ResetTimer()
						start := time.Now()
						for range b.N {
							if err := o.Step(context.Background(), params); err != nil {
								b.Fatal(err)
							}
						}
						b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/iter")
					})
				}
			}
		}
	}
}

// BenchmarkKL measures KL (Z by the method fixed for N and dims).
func BenchmarkKL(b *testing.B) {
	for _, n := range []int{2000, 10000, 70000} {
		for _, dims := range []int{2, 3} {
			b.Run(fmt.Sprintf("%dd/%d", dims, n), func(b *testing.B) {
				tp := newTestProblem(n, 5, 30, 90, 99)
				y0 := spreadY(tp, dims, map[int]float64{2000: 10, 10000: 20, 70000: 40}[n], 5)
				o, err := newOptimizer(context.Background(), New(0), tp.p, y0, embed.OptimizerConfig{N: n, Dims: dims, Repulsion: embed.RepulsionAuto, Theta: 0.5})
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					if _, err := o.KL(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
			})
		}
	}
}

// BenchmarkAttraction measures the attractive-force pass alone (one thread).
func BenchmarkAttraction(b *testing.B) {
	tp := newTestProblem(20000, 5, 30, 90, 99)
	y := spreadY(tp, 2, 20, 5)
	p := tp.p
	b.ResetTimer()
	s := 0.0
	for range b.N {
		for i := range tp.n {
			a := attraction(y, p.RowPtr, p.Col, p.Val, 2, i)
			s += a[0]
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(p.NNZ()), "ns/entry")
	_ = s
}

// BenchmarkCrossover compares exact and Barnes-Hut repulsion at small N, the
// measurements behind autoExactMax2D/3D.
func BenchmarkCrossover(b *testing.B) {
	for _, n := range []int{250, 500, 1000, 2000} {
		tp := newTestProblem(n, 5, 10, 90, 98)
		for _, dims := range []int{2, 3} {
			for _, m := range []embed.Repulsion{embed.RepulsionExact, embed.RepulsionBarnesHut} {
				b.Run(fmt.Sprintf("%s/%dd/%d", m, dims, n), func(b *testing.B) {
					y0 := spreadY(tp, dims, 8, 5)
					o, err := newOptimizer(context.Background(), New(0), tp.p, y0, embed.OptimizerConfig{N: n, Dims: dims, Repulsion: m, Theta: 0.5})
					if err != nil {
						b.Fatal(err)
					}
					params := embed.StepParams{Exaggeration: 1, Momentum: 0, LearningRate: 1e-6}
					b.ResetTimer()
					for range b.N {
						if err := o.Step(context.Background(), params); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/iter")
				})
			}
		}
	}
}

// BenchmarkRun is a whole 2-D optimisation with the usual schedule (auto,
// Barnes-Hut and FFT): 1000 steps from a tiny random start, KL every 50 steps, reporting
// seconds per run and the mean ms per step.
func BenchmarkRun(b *testing.B) {
	for _, n := range []int{2000, 10000, 70000} {
		var tp *testProblem
		for _, m := range []embed.Repulsion{embed.RepulsionAuto, embed.RepulsionBarnesHut, embed.RepulsionFFT} {
			b.Run(fmt.Sprintf("%s/%d", m, n), func(b *testing.B) {
				if tp == nil {
					tp = newTestProblem(n, 5, 30, 90, 99)
				}
				b.ResetTimer()
				for range b.N {
					o, err := newOptimizer(context.Background(), New(0), tp.p, initialY(n, 2, 3), embed.OptimizerConfig{N: n, Dims: 2, Repulsion: m, Theta: 0.5})
					if err != nil {
						b.Fatal(err)
					}
					for it := range 1000 {
						if err := o.Step(context.Background(), schedule(n, it)); err != nil {
							b.Fatal(err)
						}
						if it%50 == 49 {
							if _, err := o.KL(context.Background()); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
				b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/run")
				b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N)/1000, "ms/step")
			})
		}
	}
}

// BenchmarkRepulsionGrid times one repulsion pass of Barnes-Hut (θ = 0.5)
// and of the FFT interpolation (Step's spacing and order, grid side bounded
// by fftMaxSide) on layouts of ten Gaussian blobs of growing extent, at N
// up to a million: the figures behind hybridFFTGrid. It reports the FFT's
// padded grid in nodes per point.
func BenchmarkRepulsionGrid(b *testing.B) {
	for _, n := range []int{70000, 250000, 1000000} {
		for _, r := range []float64{3, 10, 20, 30, 40, 60} {
			y := blobLayout(n, r)
			rep := make([]float64, 2*n)
			be := New(0)
			for _, m := range []string{"bh", "fft"} {
				b.Run(fmt.Sprintf("%d/r%g/%s", n, r, m), func(b *testing.B) {
					var f repulser = newBHTree(be, n, 2, 0.5)
					fr := newFFTRepulsion(be, n, fftStepSpacing, fftStepOrder, fftMaxSide(n))
					if m == "fft" {
						f = fr
					}
					cpu0 := processCPU()
					for b.Loop() {
						if _, err := f.repulse(context.Background(), y, rep); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric((processCPU()-cpu0).Seconds()*1000/float64(b.N), "cpu-ms/op")
					if m == "fft" {
						b.ReportMetric(float64(fr.px*fr.py)/float64(n), "nodes/point")
					}
				})
			}
		}
	}
}

// processCPU is the user+system CPU time of this process so far: on a
// shared machine wall times are inflated by the other load, CPU time much
// less so.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// blobLayout is a 2-D layout of n points in ten Gaussian blobs (standard
// deviation r/5) whose centres lie in [−r, r]².
func blobLayout(n int, r float64) []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	var c [20]float64
	for i := range c {
		c[i] = r * (2*rng.Float64() - 1)
	}
	y := make([]float32, 2*n)
	for i := range n {
		k := i % 10
		y[2*i] = float32(c[2*k] + r/5*rng.NormFloat64())
		y[2*i+1] = float32(c[2*k+1] + r/5*rng.NormFloat64())
	}
	return y
}
