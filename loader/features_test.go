package loader

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/internal/featurefile"
)

// featureFixture is four vectors of three values, in file order.
var (
	fixIDs  = []string{"b", "a", "d", "c"}
	fixVecs = [][]float32{{1, 2, 3}, {4, 5, 6.5}, {-7, 8, 9}, {0.25, 0, -1}}
)

func serveFiles(t *testing.T, files map[string][]byte) string {
	t.Helper()
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	return srv.URL
}

func mustParquet(t *testing.T, ids []string, vecs [][]float32, idCol, vecCol string, fixed bool) []byte {
	t.Helper()
	b, err := featurefile.Parquet(ids, vecs, idCol, vecCol, fixed)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFetchFeaturesFormats(t *testing.T) {
	npy32, ids := featurefile.NPY(fixIDs, fixVecs, false)
	npy64, _ := featurefile.NPY(fixIDs, fixVecs, true)
	base := serveFiles(t, map[string][]byte{
		"/f32.npy": npy32, "/f32.ids.txt": ids,
		"/f64.npy": npy64, "/f64.ids.txt": ids,
		"/f.tsv":          featurefile.Text(fixIDs, fixVecs, '\t', "id"),
		"/f.csv":          featurefile.Text(fixIDs, fixVecs, ',', "id"),
		"/list.parquet":   mustParquet(t, fixIDs, fixVecs, "id", "clip", false),
		"/fixed.parquet":  mustParquet(t, fixIDs, fixVecs, "id", "clip", true),
		"/object.parquet": mustParquet(t, fixIDs, fixVecs, "object", "embedding", true),
	})
	l := newTestLoader(t, nil)
	for _, tc := range []struct{ path, idCol string }{
		{"/f32.npy", ""}, {"/f64.npy", ""}, {"/f.tsv", ""}, {"/f.csv", "id"},
		{"/list.parquet", ""}, {"/fixed.parquet", "id"}, {"/object.parquet", "object"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			f, err := l.FetchFeatures(context.Background(), base+tc.path, FeaturesOptions{IDColumn: tc.idCol})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.IDs, fixIDs) || f.Dim != 3 || f.URL != base+tc.path {
				t.Fatalf("ids %q dim %d url %s", f.IDs, f.Dim, f.URL)
			}
			for i, v := range fixVecs {
				if !slices.Equal(f.Vector(i), v) {
					t.Errorf("vector %d = %v, want %v", i, f.Vector(i), v)
				}
			}
		})
	}
}

// TestFetchFeaturesErrors: every mistake is dataset_invalid (or, for a file
// that is not there, dataset_unreachable), naming the file and the row, id
// or column.
func TestFetchFeaturesErrors(t *testing.T) {
	nan := []float32{1, float32(math.NaN()), 3}
	npyNaN, ids := featurefile.NPY(fixIDs, [][]float32{fixVecs[0], nan, fixVecs[2], fixVecs[3]}, false)
	npyOK, _ := featurefile.NPY(fixIDs, fixVecs, true)
	ragged := [][]float32{{1, 2, 3}, {4, 5}, {6, 7, 8}, {9, 10, 11}}
	files := map[string][]byte{
		"/dup.tsv":        []byte("id\tv0\tv1\nx\t1\t2\ny\t3\t4\nx\t5\t6\n"),
		"/ragged.tsv":     []byte("id\tv0\tv1\nx\t1\t2\ny\t3\n"),
		"/ragged.parquet": mustParquet(t, fixIDs, ragged, "id", "clip", false),
		"/nan.npy":        npyNaN, "/nan.ids.txt": ids,
		"/inf.csv":       []byte("id,v0,v1\nx,1,2\ny,3,-Inf\n"),
		"/word.csv":      []byte("id,v0,v1\nx,1,2\ny,3,four\n"),
		"/empty.tsv":     {},
		"/header.tsv":    []byte("id\tv0\n"),
		"/noid.tsv":      []byte("key\tv0\nx\t1\n"),
		"/noid.parquet":  mustParquet(t, fixIDs, fixVecs, "key", "clip", true),
		"/fixed.parquet": mustParquet(t, fixIDs, fixVecs, "id", "clip", true),
		"/null.parquet":  mustParquet(t, fixIDs, [][]float32{fixVecs[0], nil, fixVecs[2], fixVecs[3]}, "id", "clip", false),
		"/short.npy":     npyOK, "/short.ids.txt": []byte("b\na\n"),
		"/noids.npy":       npyOK,
		"/big.tsv":         []byte("id\tv0\n" + strings.Repeat("x\t1\n", 1000)),
		"/garbage.parquet": []byte("PAR1 this is not a parquet file PAR1"),
		"/wide.tsv":        []byte("key" + strings.Repeat("\tcol", 399) + "\n"),
	}
	base := serveFiles(t, files)
	l := newTestLoader(t, func(c *Config) { c.MaxFeaturesBytes = 3000 })
	for _, tc := range []struct {
		path, column string
		want         []string // substrings of the message
		unreachable  bool
	}{
		{"/dup.tsv", "", []string{`id "x" appears twice`, "rows 0 and 2"}, false},
		{"/ragged.tsv", "", []string{"line 3", `id "y"`, "same length"}, false},
		{"/ragged.parquet", "", []string{"row 1", `id "a"`, `column "clip"`, "2 values", "same length"}, false},
		{"/nan.npy", "", []string{"row 1 column 1 is NaN"}, false},
		{"/inf.csv", "", []string{"line 3", `id "y"`, `column "v1"`, "finite"}, false},
		{"/word.csv", "", []string{"line 3", `column "v1"`, `"four" is not a number`}, false},
		{"/empty.tsv", "", []string{"empty"}, false},
		{"/header.tsv", "", []string{"no vectors"}, false},
		{"/noid.tsv", "", []string{`id column "id" not found`, `"key"`}, false},
		// A wide header is listed to a bound, as the table's is.
		{"/wide.tsv", "", []string{`id column "id" not found`, `"key"`, "and 380 more"}, false},
		{"/noid.parquet", "", []string{`id column "id" not found`, `"key", "clip"`}, false},
		{"/fixed.parquet", "vectors", []string{`column "vectors" not found (features_column)`}, false},
		{"/null.parquet", "", []string{"row 1", `id "a"`, "null"}, false},
		{"/short.npy", "", []string{"short.ids.txt has 2 ids for the array's 4 rows"}, false},
		{"/noids.npy", "", []string{"noids.ids.txt", "404"}, false},
		{"/big.tsv", "", []string{"too large", "limit"}, false},
		{"/garbage.parquet", "", []string{"not a readable Parquet file"}, false},
		{"/absent.tsv", "", []string{"404"}, true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			_, err := l.FetchFeatures(context.Background(), base+tc.path, FeaturesOptions{Column: tc.column})
			want := ErrDatasetInvalid
			if tc.unreachable {
				want = ErrDatasetUnreachable
			}
			if !errors.Is(err, want) {
				t.Fatalf("err = %v, want %v", err, want)
			}
			msg := err.Error()
			for _, s := range append(tc.want, base+tc.path) {
				if !strings.Contains(msg, s) {
					t.Errorf("message %q lacks %q", msg, s)
				}
			}
		})
	}
}

func TestFetchFeaturesRefusesPrivateAddresses(t *testing.T) {
	base := serveFiles(t, map[string][]byte{"/f.tsv": featurefile.Text(fixIDs, fixVecs, '\t', "id")})
	l := newTestLoader(t, func(c *Config) { c.AllowPrivateNetworks = false })
	_, err := l.FetchFeatures(context.Background(), base+"/f.tsv", FeaturesOptions{})
	if !errors.Is(err, ErrForbiddenAddress) || !errors.Is(err, ErrDatasetUnreachable) {
		t.Fatalf("err = %v, want the guard's refusal", err)
	}
}
