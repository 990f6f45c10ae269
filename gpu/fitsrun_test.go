package gpu

import (
	"testing"

	"github.com/tsnemap/tsnemap/embed"
)

// A run is sized by what reaches the device: pixels as uint8, but as
// float32 unit rows with the cosine metric (embed.UnitRows).
func TestProblemOfSizesWhatTheBackendIsGiven(t *testing.T) {
	cosine := embed.DefaultOptions()
	cosine.Metric = embed.MetricCosine
	for _, tc := range []struct {
		name   string
		u8     bool
		opts   embed.Options
		wantU8 bool
	}{
		{"pixels", true, embed.DefaultOptions(), true},
		{"features", false, embed.DefaultOptions(), false},
		{"pixels, cosine", true, cosine, false},
		{"features, cosine", false, cosine, false},
	} {
		if p := ProblemOf(1000, 30000, tc.u8, tc.opts); p.U8 != tc.wantU8 {
			t.Errorf("%s: U8 %v, want %v", tc.name, p.U8, tc.wantU8)
		}
	}
}
