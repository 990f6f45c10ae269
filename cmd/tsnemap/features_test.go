package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/featurefile"
	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/openapi"
)

// featureCatalogue serves a table of n rows (ids F000…, in four groups)
// plus one row (NOVEC) that no features file covers, the rows' images,
// and the group vectors in every format, each file in its own shuffled
// order with two vectors (EXTRA0, EXTRA1) of ids not in the table.
type featureCatalogue struct {
	srv  *httptest.Server
	n    int
	vecs map[string][]float32
}

var featureFormats = []string{"/f32.npy", "/f64.npy", "/f.tsv", "/f.csv", "/list.parquet", "/fixed.parquet"}

func newFeatureCatalogue(t *testing.T, n int) *featureCatalogue {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	c := &featureCatalogue{n: n, vecs: map[string][]float32{}}
	files := map[string][]byte{}
	var tab bytes.Buffer
	tab.WriteString("id\ttitle\n")
	var ids []string
	for i := range n {
		id := fmt.Sprintf("F%03d", i)
		ids = append(ids, id)
		fmt.Fprintf(&tab, "%s\tthing %d\n", id, i)
		files["/img/"+id+".png"] = testkit.EncodePNG(t, testkit.Swatch(groupColor(i%groups), 24, 7, i))
		v := make([]float32, 16)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		v[i%groups] += 12 // four well separated groups
		c.vecs[id] = v
	}
	tab.WriteString("NOVEC\tthe row without a vector\n")
	files["/data.tab"] = tab.Bytes()
	ids = append(ids, "EXTRA0", "EXTRA1")
	c.vecs["EXTRA0"], c.vecs["EXTRA1"] = make([]float32, 16), make([]float32, 16)
	c.vecs["EXTRA0"][0], c.vecs["EXTRA1"][1] = 1, 1
	shuffled := func(seed uint64) ([]string, [][]float32) {
		order := rand.New(rand.NewPCG(seed, 1)).Perm(len(ids))
		var sid []string
		var sv [][]float32
		for _, k := range order {
			sid, sv = append(sid, ids[k]), append(sv, c.vecs[ids[k]])
		}
		return sid, sv
	}
	sid, sv := shuffled(1)
	files["/f32.npy"], files["/f32.ids.txt"] = featurefile.NPY(sid, sv, false)
	sid, sv = shuffled(2)
	files["/f64.npy"], files["/f64.ids.txt"] = featurefile.NPY(sid, sv, true)
	sid, sv = shuffled(3)
	files["/f.tsv"] = featurefile.Text(sid, sv, '\t', "id")
	sid, sv = shuffled(4)
	files["/f.csv"] = featurefile.Text(sid, sv, ',', "id")
	var err error
	sid, sv = shuffled(5)
	if files["/list.parquet"], err = featurefile.Parquet(sid, sv, "id", "clip", false); err != nil {
		t.Fatal(err)
	}
	sid, sv = shuffled(6)
	if files["/fixed.parquet"], err = featurefile.Parquet(sid, sv, "id", "clip", true); err != nil {
		t.Fatal(err)
	}
	// Broken files, one mistake each.
	files["/dup.tsv"] = []byte("id\tv0\tv1\nF000\t1\t2\nF001\t3\t4\nF000\t5\t6\n")
	files["/ragged.csv"] = []byte("id,v0,v1\nF000,1,2\nF001,3\n")
	files["/nan.tsv"] = []byte("id\tv0\tv1\nF000\t1\t2\nF001\tNaN\t4\n")
	files["/empty.parquet"] = nil
	if files["/nocol.parquet"], err = featurefile.Parquet(sid, sv, "key", "clip", true); err != nil {
		t.Fatal(err)
	}
	c.srv = httptest.NewServer(testkit.Files(files))
	t.Cleanup(c.srv.Close)
	return c
}

func (e *e2e) getJSON(path string, v any) {
	e.t.Helper()
	code, b := e.do("GET", path, "")
	if code != 200 {
		e.t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
}

func (e *e2e) succeed(body string) (string, openapi.Job) {
	e.t.Helper()
	id := e.submit(body)
	j := e.wait(id, 90*time.Second, ended)
	if j.Status != "succeeded" {
		e.t.Fatalf("job %s: %s %+v", body, j.Status, j.Error)
	}
	return id, j
}

// TestFeaturesMatchedByIDInEveryFormat: every format, each in its own
// order with vectors of ids not in the table, gives exactly the PCA map of
// the vectors in the table's order; the row without a vector fails with
// the reason, the extra vectors are counted.
func TestFeaturesMatchedByIDInEveryFormat(t *testing.T) {
	cat := newFeatureCatalogue(t, 40)
	e := startE2E(t, true)
	var want []openapi.Point
	for _, f := range featureFormats {
		id, j := e.succeed(fmt.Sprintf(`{"dataset_url":%q,"features_url":%q,"method":"pca","seed":3}`, cat.srv.URL+"/data.tab", cat.srv.URL+f))
		if p := j.Progress; p.VectorsMatched == nil || *p.VectorsMatched != 40 || p.VectorsIgnored == nil || *p.VectorsIgnored != 2 {
			t.Errorf("%s: vectors matched %v, ignored %v; want 40 and 2", f, p.VectorsMatched, p.VectorsIgnored)
		}
		var res openapi.Result
		e.getJSON("/v1/jobs/"+id+"/result?format=json", &res)
		if len(res.Points) != 41 || res.Points[40].Id != "NOVEC" || res.Points[40].X != nil {
			t.Fatalf("%s: %d points, last %+v", f, len(res.Points), res.Points[len(res.Points)-1])
		}
		var fl openapi.FailureList
		e.getJSON("/v1/jobs/"+id+"/failures", &fl)
		if len(fl.Failures) != 1 || fl.Failures[0].Id != "NOVEC" || fl.Failures[0].Row != 40 || !strings.Contains(fl.Failures[0].Error, "no vector") {
			t.Errorf("%s: failures %+v", f, fl.Failures)
		}
		if want == nil {
			want = res.Points
			checkGroupsApart(t, f, res.Points)
			continue
		}
		for i, p := range res.Points[:40] {
			if *p.X != *want[i].X || *p.Y != *want[i].Y {
				t.Fatalf("%s: row %d (%s) at (%v, %v), %s put it at (%v, %v)", f, i, p.Id, *p.X, *p.Y, featureFormats[0], *want[i].X, *want[i].Y)
			}
		}
	}
}

// checkGroupsApart: each point is nearer its own group's centre than any
// other's (the vectors, not the pixels or the order, made the map).
func checkGroupsApart(t *testing.T, name string, pts []openapi.Point) {
	t.Helper()
	var cx, cy [groups]float64
	for i, p := range pts[:len(pts)-1] {
		cx[i%groups] += *p.X / float64((len(pts)-1)/groups)
		cy[i%groups] += *p.Y / float64((len(pts)-1)/groups)
	}
	for i, p := range pts[:len(pts)-1] {
		best, bestD := -1, math.Inf(1)
		for g := range groups {
			if d := math.Hypot(*p.X-cx[g], *p.Y-cy[g]); d < bestD {
				best, bestD = g, d
			}
		}
		if best != i%groups {
			t.Errorf("%s: row %d of group %d is nearest group %d", name, i, i%groups, best)
		}
	}
}

// checkNeighboursInGroup: each point's nearest point in the map is of its
// own group.
func checkNeighboursInGroup(t *testing.T, name string, pts []openapi.Point) {
	t.Helper()
	pts = pts[:len(pts)-1]
	for i, p := range pts {
		best, bestD := -1, math.Inf(1)
		for k, q := range pts {
			if d := math.Hypot(*p.X-*q.X, *p.Y-*q.Y); k != i && d < bestD {
				best, bestD = k, d
			}
		}
		if best%groups != i%groups {
			t.Errorf("%s: row %d of group %d has row %d of group %d nearest", name, i, i%groups, best, best%groups)
		}
	}
}

// TestFeaturesMistakesFailWithDatasetInvalid: each mistake in a features
// file fails the job with dataset_invalid, naming the file and the row,
// id or column.
func TestFeaturesMistakesFailWithDatasetInvalid(t *testing.T) {
	cat := newFeatureCatalogue(t, 12)
	e := startE2E(t, true)
	for _, tc := range []struct {
		file, extra string
		want        []string
	}{
		{"/dup.tsv", "", []string{`id "F000" appears twice`}},
		{"/ragged.csv", "", []string{"line 3", `id "F001"`, "same length"}},
		{"/nan.tsv", "", []string{"line 3", `id "F001"`, `column "v0"`, "finite"}},
		{"/empty.parquet", "", []string{"empty"}},
		{"/nocol.parquet", "", []string{`id column "id" not found`}},
		{"/fixed.parquet", `,"features_column":"vectors"`, []string{`column "vectors" not found (features_column)`}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			e.t = t
			// perplexity 3: below the 12-row table's bound, so the file is read.
			id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"features_url":%q,"perplexity":3%s}`, cat.srv.URL+"/data.tab", cat.srv.URL+tc.file, tc.extra))
			j := e.wait(id, 60*time.Second, ended)
			if j.Status != "failed" || j.Error == nil || j.Error.Code != "dataset_invalid" {
				t.Fatalf("job %s, error %+v; want failed with dataset_invalid", j.Status, j.Error)
			}
			for _, s := range append(tc.want, cat.srv.URL+tc.file) {
				if !strings.Contains(j.Error.Message, s) {
					t.Errorf("message %q lacks %q", j.Error.Message, s)
				}
			}
		})
	}
}

// TestFeaturesWithoutImagesDrawPoints: a t-SNE job of vectors with the
// cosine metric and no images succeeds, has no thumbnails, and its
// map.png draws a dot for each point; with a template the same job keeps
// thumbnails and map.png shows them.
func TestFeaturesWithoutImagesDrawPoints(t *testing.T) {
	cat := newFeatureCatalogue(t, 40)
	e := startE2E(t, true)
	body := fmt.Sprintf(`{"dataset_url":%q,"features_url":%q,"metric":"cosine","perplexity":5}`, cat.srv.URL+"/data.tab", cat.srv.URL+"/list.parquet")
	id, j := e.succeed(body)
	if j.Links.Atlas != nil || j.Request.Metric != "cosine" || j.Progress.ImagesTotal != 0 {
		t.Errorf("atlas %v, metric %q, images %d; want none, cosine, 0", j.Links.Atlas, j.Request.Metric, j.Progress.ImagesTotal)
	}
	var res openapi.Result
	e.getJSON("/v1/jobs/"+id+"/result?format=json", &res)
	checkNeighboursInGroup(t, "cosine", res.Points)
	grey, coloured := mapPixels(t, e, id)
	if grey < 40*4 || coloured != 0 {
		t.Errorf("map.png without images: %d grey dot pixels, %d coloured; want ≥ 160 and 0", grey, coloured)
	}

	body = strings.TrimSuffix(body, "}") + fmt.Sprintf(`,"image_url_template":%q,"image_size":{"width":8,"height":8}}`, cat.srv.URL+"/img/{id}.png")
	id, j = e.succeed(body)
	if j.Links.Atlas == nil || j.Progress.ImagesLoaded != 40 || j.Progress.ImagesFailed != 1 {
		t.Errorf("with images: atlas %v, %d loaded, %d failed; want an atlas, 40, 1 (NOVEC has no image)", j.Links.Atlas, j.Progress.ImagesLoaded, j.Progress.ImagesFailed)
	}
	if _, coloured := mapPixels(t, e, id); coloured < 40*4 {
		t.Errorf("map.png with images: %d thumbnail pixels", coloured)
	}
}

// mapPixels counts map.png's grey (dot) and saturated (thumbnail) pixels.
func mapPixels(t *testing.T, e *e2e, id string) (grey, coloured int) {
	t.Helper()
	code, b := e.do("GET", "/v1/jobs/"+id+"/map.png?width=400&height=300", "")
	if code != 200 {
		t.Fatalf("map.png: %d %s", code, b)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			switch {
			case c.R == c.G && c.G == c.B && c.R < 200:
				grey++
			case max(c.R, c.G, c.B)-min(c.R, c.G, c.B) > 80:
				coloured++
			}
		}
	}
	return grey, coloured
}

func TestRunCommandWithFeatures(t *testing.T) {
	cat := newFeatureCatalogue(t, 20)
	out := t.TempDir() + "/map.tab"
	var stdout, stderr bytes.Buffer
	args := []string{"--dataset-url", cat.srv.URL + "/data.tab", "--features-url", cat.srv.URL + "/fixed.parquet",
		"--metric", "cosine", "--method", "pca", "-o", out, "--quiet"}
	env := map[string]string{"TSNEMAP_ALLOW_PRIVATE_NETWORKS": "true"}
	if err := runCommand(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != "id\ttitle\tx\ty" || len(lines) != 22 || lines[21] != "NOVEC\tthe row without a vector\t\t" {
		t.Errorf("table:\n%s", b)
	}
	args[len(args)-6] = "manhattan"
	if err := runCommand(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "metric") {
		t.Errorf("--metric manhattan: %v", err)
	}
}

// TestEmbedCommandMetric: tsnemap embed --metric cosine maps rows of
// different norms; an unknown metric is an error naming the option; a
// zero row is an error naming the row.
func TestEmbedCommandMetric(t *testing.T) {
	dir := t.TempDir()
	var in bytes.Buffer
	in.WriteString("id\ta\tb\tc\n")
	for i := range 30 {
		s := float64(1 + i%5*20) // norms differ by up to 81 times within a group
		v := [3]float64{0.01 * float64(i), 0.02, 0.03}
		v[i%3] = 1
		fmt.Fprintf(&in, "r%d\t%g\t%g\t%g\n", i, s*v[0], s*v[1], s*v[2])
	}
	if err := os.WriteFile(dir+"/in.tsv", in.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(metric string) (string, error) {
		var out, stderr bytes.Buffer
		err := embedCommand(context.Background(), []string{"--input", dir + "/in.tsv", "--metric", metric, "--perplexity", "3", "--backend", "cpu", "--quiet"}, &out, &stderr)
		return out.String(), err
	}
	out, err := run("cosine")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 31 {
		t.Fatalf("output:\n%s", out)
	}
	if _, err := run("manhattan"); err == nil || !strings.Contains(err.Error(), "metric") {
		t.Errorf("--metric manhattan: %v", err)
	}
	if err := os.WriteFile(dir+"/in.tsv", append(in.Bytes(), "zero\t0\t0\t0\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := run("cosine"); err == nil || !strings.Contains(err.Error(), "row 30") {
		t.Errorf("zero row: %v", err)
	}
}
