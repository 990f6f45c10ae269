package embed_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/synth"
)

// BenchmarkRun times whole t-SNE runs (PCA, neighbours, affinities, 1000
// iterations) on clustered 50-D data. `tsnemap bench` prints the same with
// stage times and peak memory, each size in its own process.
func BenchmarkRun(b *testing.B) {
	for _, n := range []int{2000, 10000, 70000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			if testing.Short() && n > 2000 {
				b.Skip("large size skipped under -short")
			}
			x, _ := synth.Clusters(n, 50, 10, 8, 1)
			data := embed.Data{N: n, D: 50, F32: x}
			be := cpu.New(0)
			b.ResetTimer()
			for b.Loop() {
				if _, err := embed.Run(context.Background(), be, data, embed.DefaultOptions(), nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "points/s")
		})
	}
}

// BenchmarkPrepare times PCA, neighbours and affinities (one iteration of
// optimisation) on image rows: 100×100 RGB pixels as uint8.
func BenchmarkPrepare(b *testing.B) {
	for _, n := range []int{2000, 10000} {
		b.Run(fmt.Sprintf("N=%dx30000u8", n), func(b *testing.B) {
			if testing.Short() && n > 2000 {
				b.Skip("large size skipped under -short")
			}
			pix, _ := synth.Images(n, 100, 100, 10, 1)
			data := embed.Data{N: n, D: 30000, U8: pix}
			o := embed.DefaultOptions()
			o.Iterations = 1
			be := cpu.New(0)
			b.ResetTimer()
			for b.Loop() {
				if _, err := embed.Run(context.Background(), be, data, o, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
