package pipeline

import (
	"slices"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/loader"
)

// TestMatchFeatures: rows are joined with vectors by id whatever the
// order; a row without a vector fails, and with cosine so does a row whose
// vector is all zeros; vectors of ids not in the table are counted; two
// rows with one id share its vector.
func TestMatchFeatures(t *testing.T) {
	table := &loader.Table{Rows: []loader.Row{{ID: "a"}, {ID: "b"}, {ID: "none"}, {ID: "zero"}, {ID: "a"}}}
	f := &loader.Features{URL: "https://h/v.tsv", Dim: 2, IDs: []string{"zero", "extra1", "b", "a", "extra2"},
		Values: []float32{0, 0, 9, 9, 2, 2, 1, 1, 8, 8}}
	for _, tc := range []struct {
		cosine   bool
		rows     []int
		values   []float32
		failures []string // ids
	}{
		{false, []int{0, 1, 3, 4}, []float32{1, 1, 2, 2, 0, 0, 1, 1}, []string{"none"}},
		{true, []int{0, 1, 4}, []float32{1, 1, 2, 2, 1, 1}, []string{"none", "zero"}},
	} {
		m := matchFeatures(table, f, tc.cosine)
		if !slices.Equal(m.rows, tc.rows) || !slices.Equal(m.values, tc.values) || m.ignored != 2 {
			t.Errorf("cosine %v: rows %v values %v ignored %d; want %v %v 2", tc.cosine, m.rows, m.values, m.ignored, tc.rows, tc.values)
		}
		var ids []string
		for _, fl := range m.failures {
			ids = append(ids, fl.ID)
			if !strings.Contains(fl.Error, f.URL) || fl.Row != slices.IndexFunc(table.Rows, func(r loader.Row) bool { return r.ID == fl.ID }) {
				t.Errorf("failure %+v: want the file named and the row", fl)
			}
		}
		if !slices.Equal(ids, tc.failures) {
			t.Errorf("cosine %v: failures %v, want %v", tc.cosine, ids, tc.failures)
		}
	}
}
