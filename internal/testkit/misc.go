package testkit

import (
	"context"
	"io"
	"log/slog"
	"math"

	"github.com/tsnemap/tsnemap/atlas"
)

// QuietLogger discards everything: for the services a test starts, whose
// logs would drown the test's own output.
func QuietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// RelL2 is the relative error ‖got − want‖ / ‖want‖.
func RelL2(got, want []float64) float64 {
	var num, den float64
	for i := range want {
		num += (got[i] - want[i]) * (got[i] - want[i])
		den += want[i] * want[i]
	}
	return math.Sqrt(num / den)
}

// Atlas colours: AtlasOfRows' image of row 0 is AtlasRed, of row 2
// AtlasBlue.
var (
	AtlasRed  = [3]uint8{220, 20, 20}
	AtlasBlue = [3]uint8{20, 20, 220}
)

// AtlasOfRows is a real atlas (atlas.Build) of a three-row table whose
// rows 0 ("a", red) and 2 ("c", blue) loaded and row 1 ("b") failed.
// It is called from runners the tests' workers run, where there is no
// test to fail: its input is fixed, so Build cannot fail on it.
func AtlasOfRows() *atlas.Atlas {
	const w, h = 6, 4
	var pix []uint8
	for _, c := range [][3]uint8{AtlasRed, AtlasBlue} {
		for range w * h {
			pix = append(pix, c[0], c[1], c[2])
		}
	}
	a, err := atlas.Build(context.Background(), atlas.Source{Width: w, Height: h, Pix: pix, Rows: []int{0, 2}, TotalRows: 3,
		IDs: []string{"a", "c"}, URLs: []string{"http://img/a.png", "http://img/c.png"}})
	if err != nil {
		panic(err)
	}
	return a
}

// AtlasOfSheets is an atlas of n sheets with three bytes each (the
// last byte of sheet k is k): for tests of storing and serving sheets,
// which never decode them.
func AtlasOfSheets(n int) *atlas.Atlas {
	a := &atlas.Atlas{Index: atlas.Index{Cell: 64, Rows: 1, Missing: []int{}}}
	for k := range n {
		a.Index.Sheets = append(a.Index.Sheets, atlas.Sheet{Width: 64, Height: 64})
		a.Sheets = append(a.Sheets, []byte{0xFF, 0xD8, byte(k)})
	}
	return a
}
