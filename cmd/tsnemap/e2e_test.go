package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/openapi"
)

// catalogue is an image server made by the test: a Latin-1 TSV, a CSV with
// relative image URLs, PNGs in four colour groups, one missing image, and
// images that never arrive (for cancel and timeout).
type catalogue struct {
	srv      *httptest.Server
	inFlight atomic.Int64 // requests for slow images not yet ended
}

const groups = 4

func groupColor(g int) color.RGBA {
	return []color.RGBA{{220, 30, 30, 255}, {30, 200, 40, 255}, {30, 40, 220, 255}, {240, 230, 40, 255}}[g]
}

func newCatalogue(t *testing.T, n int) *catalogue {
	c := &catalogue{}
	files := map[string][]byte{}
	// Latin-1: "é" is the single byte 0xE9, as in the museum's export.
	var tab bytes.Buffer
	tab.WriteString("id\ttitle\tartist\n")
	var csv bytes.Buffer
	csv.WriteString("id,title,image\n")
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("A%03d", i)
		files["/img/"+id+".png"] = testkit.EncodePNG(t, testkit.Swatch(groupColor(i%groups), 24, 7, i)) // a little texture: no two images are equal
		fmt.Fprintf(&tab, "%s\tPaysage n\xb0%d\tC\xe9zanne\n", id, i)
		fmt.Fprintf(&csv, "%s,\"Study, %d\",img/%s.png\n", id, i, id)
		if i == 3 {
			tab.WriteString("NaN\tdropped\tnobody\n")
			tab.WriteString("\tdropped too\tnobody\n")
			tab.WriteString("MISSING\tlost\tunknown\n")
		}
	}
	files["/data.tab"] = tab.Bytes()
	files["/data.csv"] = csv.Bytes()
	var slow bytes.Buffer
	slow.WriteString("id\n")
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&slow, "S%d\n", i)
	}
	files["/slow.tab"] = slow.Bytes()
	// mixed.tab: three images that fail at once (404) among ones that never
	// answer, so failures can be seen while the job is still loading.
	files["/mixed.tab"] = []byte("id\nS0\nGONE0\nS1\nGONE1\nS2\nGONE2\n")
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/slow/") || strings.HasPrefix(r.URL.Path, "/mixed/S") {
			c.inFlight.Add(1)
			defer c.inFlight.Add(-1)
			<-r.Context().Done() // never answers: only cancellation ends it
			return
		}
		testkit.Files(files).ServeHTTP(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

type e2e struct {
	t   *testing.T
	url string
	api *testkit.API
}

func startE2E(t *testing.T, allowPrivate bool) *e2e {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := common{dataDir: t.TempDir(), backend: "cpu", threads: 2, concurrency: 1, maxTimeout: time.Hour,
		retention: time.Hour, maxDeliveries: 3, allowPrivate: allowPrivate, natsReplicas: 1}
	log := testkit.QuietLogger()
	svc, err := startService(ctx, c, "127.0.0.1:0", false, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.wait(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &e2e{t: t, url: svc.url, api: testkit.NewAPI(t, svc.url)}
}

// do sends a request and validates the answer against the spec.
func (e *e2e) do(method, path, body string) (int, []byte) {
	e.t.Helper()
	res, b := e.api.Do(method, path, body)
	return res.StatusCode, b
}

func (e *e2e) submit(body string) string {
	e.t.Helper()
	return e.api.Submit(body).Id
}

func (e *e2e) wait(id string, within time.Duration, ok func(openapi.Job) bool) openapi.Job {
	e.t.Helper()
	return e.api.WaitJob(id, within, ok)
}

var ended = testkit.Ended

func TestMuseumFlowLatin1Template(t *testing.T) {
	cat := newCatalogue(t, 24)
	e := startE2E(t, true)
	// PCA keeps this test quick; TestTSNESeparatesColours runs t-SNE.
	id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"method":"pca","image_size":{"width":16,"height":16}}`,
		cat.srv.URL+"/data.tab", cat.srv.URL+"/img/{id}.png"))
	j := e.wait(id, 60*time.Second, ended)
	if j.Status != "succeeded" {
		t.Fatalf("job %s: %+v", j.Status, j.Error)
	}
	t.Logf("job took %.1fs (KL %v)", j.Progress.ElapsedSeconds, j.Progress.KlDivergence)
	if j.Progress.ImagesTotal != 25 || j.Progress.ImagesLoaded != 24 || j.Progress.ImagesFailed != 1 {
		t.Errorf("progress = %+v", j.Progress)
	}
	code, tsv := e.do("GET", "/v1/jobs/"+id+"/result", "")
	if code != 200 {
		t.Fatalf("result: %d %s", code, tsv)
	}
	lines := strings.Split(strings.TrimSuffix(string(tsv), "\n"), "\n")
	if lines[0] != "id\ttitle\tartist\tx\ty\tcluster" {
		t.Errorf("header = %q", lines[0])
	}
	if len(lines) != 1+25 {
		t.Fatalf("%d rows, want 25 (24 images and the missing one; NaN and empty ids dropped)", len(lines)-1)
	}
	// Rows in the original order, values unchanged (Latin-1 read as such).
	byGroup := make([][][]float64, groups)
	for i, line := range lines[1:] {
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			t.Fatalf("row %d has %d fields: %q", i, len(f), line)
		}
		if f[0] == "MISSING" {
			if i != 4 || f[3] != "" || f[4] != "" || f[2] != "unknown" {
				t.Errorf("missing image row %d = %q", i, line)
			}
			continue
		}
		k := i
		if i > 4 {
			k = i - 1
		}
		if want := fmt.Sprintf("A%03d\tPaysage n°%d\tCézanne", k, k); strings.Join(f[:3], "\t") != want {
			t.Errorf("row %d = %q, want %q", i, strings.Join(f[:3], "\t"), want)
		}
		x, errX := strconv.ParseFloat(f[3], 64)
		y, errY := strconv.ParseFloat(f[4], 64)
		if errX != nil || errY != nil || math.IsNaN(x) || math.IsNaN(y) {
			t.Fatalf("row %d coordinates %q %q", i, f[3], f[4])
		}
		byGroup[k%groups] = append(byGroup[k%groups], []float64{x, y})
	}
	checkColourGroups(t, byGroup, tsv)
	code, fb := e.do("GET", "/v1/jobs/"+id+"/failures", "")
	if code != 200 || !strings.Contains(string(fb), `"id":"MISSING"`) || !strings.Contains(string(fb), "404") {
		t.Errorf("failures: %d %s", code, fb)
	}
	// Thumbnails: one cell per loaded image, in the group colour, and the
	// missing image listed; the map draws them.
	code, ab := e.do("GET", "/v1/jobs/"+id+"/atlas", "")
	var idx openapi.AtlasIndex
	if code != 200 || json.Unmarshal(ab, &idx) != nil {
		t.Fatalf("atlas: %d %s", code, ab)
	}
	if idx.Rows != 25 || len(idx.Cells) != 24 || fmt.Sprint(idx.Missing) != "[4]" || len(idx.Sheets) != 1 || idx.Cell != 64 {
		t.Errorf("atlas index: rows %d, %d cells, missing %v, %d sheets, cell %d", idx.Rows, len(idx.Cells), idx.Missing, len(idx.Sheets), idx.Cell)
	}
	code, sheetBytes := e.do("GET", idx.Sheets[0].Url, "")
	sheet, err := jpeg.Decode(bytes.NewReader(sheetBytes))
	if code != 200 || err != nil {
		t.Fatalf("sheet: %d %v", code, err)
	}
	for k, c := range idx.Cells {
		want := groupColor(k % groups)
		r, g, b, _ := sheet.At(c.X+idx.Cell/2+3, c.Y+idx.Cell/2).RGBA()
		if d := math.Abs(float64(r>>8)-float64(want.R)) + math.Abs(float64(g>>8)-float64(want.G)) + math.Abs(float64(b>>8)-float64(want.B)); d > 120 {
			t.Errorf("thumbnail of row %d (%s): %d,%d,%d, want about %v", c.Row, c.Id, r>>8, g>>8, b>>8, want)
		}
	}
	code, mp := e.do("GET", "/v1/jobs/"+id+"/map.png?width=320&height=240", "")
	if cfg, err := png.DecodeConfig(bytes.NewReader(mp)); code != 200 || err != nil || cfg.Width != 320 || cfg.Height != 240 {
		t.Errorf("map.png: %d %v %+v", code, err, cfg)
	}
	// A finished job is deleted by DELETE, result and all.
	if code, _ := e.do("DELETE", "/v1/jobs/"+id, ""); code != 204 {
		t.Errorf("DELETE finished job: %d", code)
	}
	if code, _ := e.do("GET", "/v1/jobs/"+id+"/result", ""); code != 404 {
		t.Errorf("result after DELETE: %d", code)
	}
}

func TestCSVColumnPCA3D(t *testing.T) {
	cat := newCatalogue(t, 12)
	e := startE2E(t, true)
	id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_column":"image","method":"pca","dimensions":3,"image_size":{"width":8,"height":8}}`,
		cat.srv.URL+"/data.csv"))
	j := e.wait(id, 60*time.Second, ended)
	if j.Status != "succeeded" {
		t.Fatalf("job %s: %+v", j.Status, j.Error)
	}
	code, b := e.do("GET", "/v1/jobs/"+id+"/result?format=csv", "")
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if code != 200 || lines[0] != "id,title,image,x,y,z" || len(lines) != 13 {
		t.Fatalf("csv: %d %q", code, b)
	}
	if !strings.HasPrefix(lines[1], `A000,"Study, 0",img/A000.png,`) || strings.Count(lines[1], ",") != 6 {
		t.Errorf("row 1 = %q", lines[1])
	}
	code, b = e.do("GET", "/v1/jobs/"+id+"/result?format=json", "")
	var res openapi.Result
	if code != 200 || json.Unmarshal(b, &res) != nil || len(res.Points) != 12 || res.Points[0].Z == nil {
		t.Errorf("json: %d %s", code, b)
	}
}

func TestJobFailuresCarryContractCodes(t *testing.T) {
	cat := newCatalogue(t, 12)
	e := startE2E(t, true)
	cases := []struct{ body, code string }{
		{fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"perplexity":30}`, cat.srv.URL+"/data.tab", cat.srv.URL+"/img/{id}.png"), "perplexity_too_large"},
		{fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q}`, cat.srv.URL+"/nothing.tab", cat.srv.URL+"/img/{id}.png"), "dataset_unreachable"},
		{fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"id_column":"nope"}`, cat.srv.URL+"/data.tab", cat.srv.URL+"/img/{id}.png"), "dataset_invalid"},
		{fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"perplexity":2}`, cat.srv.URL+"/data.tab", cat.srv.URL+"/none/{id}.png"), "no_images"},
	}
	for _, c := range cases {
		id := e.submit(c.body)
		j := e.wait(id, 60*time.Second, ended)
		if j.Status != "failed" || j.Error == nil || string(j.Error.Code) != c.code || j.Error.Message == "" {
			t.Errorf("want %s: got %s %+v", c.code, j.Status, j.Error)
		}
	}
}

func TestCancelMidLoadStopsDownloads(t *testing.T) {
	cat := newCatalogue(t, 4)
	e := startE2E(t, true)
	id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"method":"pca"}`, cat.srv.URL+"/slow.tab", cat.srv.URL+"/slow/{id}.png"))
	e.wait(id, 30*time.Second, func(j openapi.Job) bool { return j.Stage == "loading_images" && cat.inFlight.Load() > 0 })
	t0 := time.Now()
	if code, b := e.do("DELETE", "/v1/jobs/"+id, ""); code != 202 {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	e.wait(id, 2*time.Second, func(j openapi.Job) bool { return j.Status == "canceled" })
	testkit.Eventually(t, 2*time.Second-time.Since(t0), func() (bool, string) {
		n := cat.inFlight.Load()
		return n == 0, fmt.Sprintf("%d downloads still running", n)
	}, "downloads 2 s after DELETE")
}

// The failures endpoint lists failed images while the others still load.
func TestFailuresWhileLoading(t *testing.T) {
	cat := newCatalogue(t, 4)
	e := startE2E(t, true)
	id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"method":"pca"}`, cat.srv.URL+"/mixed.tab", cat.srv.URL+"/mixed/{id}.png"))
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		code, b := e.do("GET", "/v1/jobs/"+id+"/failures", "")
		if code != 200 {
			t.Fatalf("failures: %d %s", code, b)
		}
		var got struct {
			Failures []struct {
				Row   int    `json:"row"`
				ID    string `json:"id"`
				Error string `json:"error"`
			} `json:"failures"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Failures) != 3 {
			return false, string(b)
		}
		for k, f := range got.Failures {
			if f.ID != fmt.Sprintf("GONE%d", k) || f.Row != 2*k+1 || !strings.Contains(f.Error, "404") {
				t.Errorf("failure %d: %+v", k, f)
			}
		}
		return true, ""
	}, "the three 404s among the failures")
	// The slow images are still in flight: the job is still loading.
	j := e.wait(id, time.Second, func(j openapi.Job) bool { return true })
	if j.Status != "running" || j.Stage != "loading_images" {
		t.Errorf("job %s/%s, want running/loading_images while images hang", j.Status, j.Stage)
	}
	if code, b := e.do("DELETE", "/v1/jobs/"+id, ""); code != 202 {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	e.wait(id, 2*time.Second, func(j openapi.Job) bool { return j.Status == "canceled" })
}

func TestCancelMidOptimisation(t *testing.T) {
	cat := newCatalogue(t, 24)
	e := startE2E(t, true)
	id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"perplexity":5,"iterations":100000,"image_size":{"width":8,"height":8}}`,
		cat.srv.URL+"/data.tab", cat.srv.URL+"/img/{id}.png"))
	e.wait(id, 60*time.Second, func(j openapi.Job) bool { return j.Stage == "optimizing" && j.Progress.Iteration > 0 })
	t0 := time.Now()
	if code, b := e.do("DELETE", "/v1/jobs/"+id, ""); code != 202 {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	j := e.wait(id, 2*time.Second, func(j openapi.Job) bool { return j.Status == "canceled" })
	t.Logf("canceled %v after DELETE, at iteration %d", time.Since(t0), j.Progress.Iteration)
}

func TestTimeout(t *testing.T) {
	cat := newCatalogue(t, 4)
	e := startE2E(t, true)
	id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"method":"pca","timeout_seconds":1}`, cat.srv.URL+"/slow.tab", cat.srv.URL+"/slow/{id}.png"))
	j := e.wait(id, 10*time.Second, ended)
	if j.Status != "failed" || j.Error == nil || j.Error.Code != "timeout" {
		t.Fatalf("job %s %+v", j.Status, j.Error)
	}
	testkit.Eventually(t, 2*time.Second, func() (bool, string) {
		n := cat.inFlight.Load()
		return n == 0, fmt.Sprintf("%d downloads still running", n)
	}, "downloads after the timeout")
}

func TestGuardRefusesPrivateURLsAtSubmit(t *testing.T) {
	e := startE2E(t, false)
	for _, u := range []string{"http://127.0.0.1:1/data.tab", "http://169.254.169.254/latest/meta-data", "http://[::1]/x"} {
		code, b := e.do("POST", "/v1/jobs", fmt.Sprintf(`{"dataset_url":%q,"image_url_template":"https://example.org/{id}.jpg"}`, u))
		if code != 422 || !strings.Contains(string(b), `"dataset_url"`) {
			t.Errorf("%s: %d %s", u, code, b)
		}
	}
}

func TestDemoCatalogueIsAllowedButNothingElse(t *testing.T) {
	d, err := startDemo(testkit.QuietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c := common{backend: "cpu"}
	a := d.addr.Addr()
	pl, err := c.pipeline(context.Background(), testkit.QuietLogger(), []netip.AddrPort{d.addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := pl.Loader.ValidateURL(ctx, "http://"+d.addr.String()+"/data.tab"); err != nil {
		t.Errorf("demo URL refused: %v", err)
	}
	// Only the demo's port: another port of its address stays closed.
	other := netip.AddrPortFrom(a, d.addr.Port()^1)
	if err := pl.Loader.ValidateURL(ctx, "http://"+other.String()+"/"); err == nil {
		t.Errorf("opening the guard for the demo opened %s too", other)
	}
	if a.String() == demoHost {
		if err := pl.Loader.ValidateURL(ctx, "http://127.0.0.1:8080/"); err == nil {
			t.Error("opening the guard for the demo opened 127.0.0.1 too")
		}
	}
	res, err := http.Get("http://" + d.addr.String() + "/data.tab")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if rows := strings.Count(string(b), "\n"); rows != 1+demoPerStyle*len(demoStyles)+3 {
		t.Errorf("data.tab has %d lines", rows)
	}
}

func TestRunCommandWritesTheTable(t *testing.T) {
	cat := newCatalogue(t, 12)
	out := t.TempDir() + "/zegami_tsne.tab"
	var stdout, stderr bytes.Buffer
	args := []string{"--dataset-url", cat.srv.URL + "/data.tab", "--image-url-template", cat.srv.URL + "/img/{id}.png",
		"--method", "pca", "--image-width", "8", "--image-height", "8", "-o", out}
	env := map[string]string{"TSNEMAP_ALLOW_PRIVATE_NETWORKS": "true"} // the catalogue is on loopback
	if err := runCommand(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != "id\ttitle\tartist\tx\ty\tcluster" || len(lines) != 14 || !strings.HasPrefix(lines[5], "MISSING\tlost\tunknown\t\t") {
		t.Errorf("table:\n%s", b)
	}
	if !strings.Contains(stderr.String(), `done: 12 of 13 rows mapped (1 images failed; 2 rows dropped for an empty or NaN-like id in "id")`) {
		t.Errorf("no summary on stderr: %q", stderr.String())
	}
	// Without the environment the guard refuses the loopback catalogue,
	// and says what lifts the refusal.
	err = runCommand(context.Background(), args, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "dataset_unreachable: ") || !strings.Contains(err.Error(), "--allow-private-networks") ||
		strings.Contains(err.Error(), "dataset unreachable") {
		t.Errorf("guarded run: %v", err)
	}
}

// TestRunCommandMessages: mistakes of the command line are usage errors
// (exit status 2) that name the flag and say what to write, before any
// download; a perplexity too large for the table fails once the table is
// read, before any image is fetched.
func TestRunCommandMessages(t *testing.T) {
	var images atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/data.tab" {
			_, _ = io.WriteString(w, "id\ntitle\nA\nB\nC\nD\nE\nF\nG\n")
			return
		}
		images.Add(1)
		http.NotFound(w, r)
	}))
	defer srv.Close()
	data, tmpl := srv.URL+"/data.tab", srv.URL+"/img/{id}.png"
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool
		says  []string
	}{
		{"no scheme", []string{"--dataset-url", "example.org:8080/data.tab", "--image-url-template", tmpl}, true,
			[]string{"--dataset-url", "has no scheme", "https://"}},
		{"unsupported scheme", []string{"--dataset-url", "ftp://example.org/data.tab", "--image-url-template", tmpl}, true,
			[]string{"--dataset-url", `scheme "ftp"`, "only http and https"}},
		{"template without {id}", []string{"--dataset-url", data, "--image-url-template", srv.URL + "/img.png"}, true,
			[]string{"--image-url-template", "has no {id}"}},
		{"template and column", []string{"--dataset-url", data, "--image-url-template", tmpl, "--image-url-column", "u"}, true,
			[]string{"--image-url-template or --image-url-column, not both"}},
		{"neither", []string{"--dataset-url", data}, true, []string{"--image-url-template", "--image-url-column"}},
		{"perplexity too large for the rows", []string{"--dataset-url", data, "--image-url-template", tmpl, "--perplexity", "5"}, false,
			[]string{"perplexity_too_large: ", "8 rows", "no image was fetched"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := map[string]string{"TSNEMAP_ALLOW_PRIVATE_NETWORKS": "true"}
			err := runCommand(context.Background(), append(tc.args, "-o", t.TempDir()+"/out.tab", "--quiet"),
				func(k string) string { return env[k] }, &stdout, &stderr)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, errUsage) != tc.usage {
				t.Errorf("usage error (exit 2): %v, want %v: %v", errors.Is(err, errUsage), tc.usage, err)
			}
			for _, want := range tc.says {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "dataset invalid") || strings.Contains(err.Error(), "first path segment") {
				t.Errorf("message: %v", err)
			}
		})
	}
	if n := images.Load(); n != 0 {
		t.Errorf("%d images fetched", n)
	}
}

func TestGeneratedGoClient(t *testing.T) {
	cat := newCatalogue(t, 8)
	e := startE2E(t, true)
	c, err := openapi.NewClientWithResponses(e.url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tmpl, method := cat.srv.URL+"/img/{id}.png", openapi.JobRequestMethod("pca")
	sub, err := c.SubmitJobWithResponse(ctx, openapi.JobRequest{DatasetUrl: cat.srv.URL + "/data.tab", ImageUrlTemplate: &tmpl, Method: &method})
	if err != nil || sub.JSON202 == nil {
		t.Fatalf("submit: %v %s", err, sub.Body)
	}
	bad := float64(-1)
	rej, err := c.SubmitJobWithResponse(ctx, openapi.JobRequest{DatasetUrl: cat.srv.URL + "/data.tab", ImageUrlTemplate: &tmpl, Perplexity: &bad})
	if err != nil || rej.ApplicationproblemJSON400 == nil || (*rej.ApplicationproblemJSON400.Errors)[0].Field != "perplexity" {
		t.Fatalf("bad submit: %v %s", err, rej.Body)
	}
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		got, err := c.GetJobWithResponse(ctx, sub.JSON202.Id)
		if err != nil || got.JSON200 == nil {
			t.Fatalf("get: %v", err)
		}
		if got.JSON200.Status == "failed" {
			t.Fatalf("job %s %+v", got.JSON200.Status, got.JSON200.Error)
		}
		return got.JSON200.Status == openapi.JobStatusSucceeded, string(got.JSON200.Status)
	}, "job through the generated client")
	format := openapi.GetJobResultParamsFormat("json")
	done, err := c.GetJobWithResponse(ctx, sub.JSON202.Id)
	if err != nil || done.JSON200 == nil {
		t.Fatalf("get: %v", err)
	}
	if d := done.JSON200.Progress.RowsDropped; d != 2 {
		t.Errorf("progress.rows_dropped = %d, want the catalogue's 2 rows without an id", d)
	}
	res, err := c.GetJobResultWithResponse(ctx, sub.JSON202.Id, &openapi.GetJobResultParams{Format: &format})
	if err != nil || res.JSON200 == nil || len(res.JSON200.Points) != 9 {
		t.Fatalf("result: %v %s", err, res.Body)
	}
}

// checkColourGroups checks that the colour groups come out as groups: nearly
// every point's nearest neighbour on the map has its colour.
func checkColourGroups(t *testing.T, byGroup [][][]float64, table []byte) {
	t.Helper()
	var pts [][]float64
	var grp []int
	for g, ps := range byGroup {
		for _, p := range ps {
			pts, grp = append(pts, p), append(grp, g)
		}
	}
	dist := func(a, b []float64) float64 {
		s := 0.0
		for i := range a {
			s += (a[i] - b[i]) * (a[i] - b[i])
		}
		return s
	}
	same := 0
	for i, p := range pts {
		best, bestD := -1, math.Inf(1)
		for k, q := range pts {
			if d := dist(p, q); k != i && d < bestD {
				best, bestD = k, d
			}
		}
		if grp[best] == grp[i] {
			same++
		}
	}
	if same < len(pts)*9/10 {
		t.Errorf("only %d of %d points have a nearest neighbour of their own colour\n%s", same, len(pts), table)
	}
}

func TestTSNESeparatesColours(t *testing.T) {
	cat := newCatalogue(t, 24)
	e := startE2E(t, true)
	// 3-D: the CPU backend's exact repulsion, quick for a few points.
	id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"dimensions":3,"perplexity":5,"iterations":300,"image_size":{"width":16,"height":16},"seed":7}`,
		cat.srv.URL+"/data.tab", cat.srv.URL+"/img/{id}.png"))
	j := e.wait(id, 120*time.Second, ended)
	if j.Status != "succeeded" || j.Progress.KlDivergence == nil || j.Progress.Iteration != 300 {
		t.Fatalf("job %s %+v %+v", j.Status, j.Error, j.Progress)
	}
	code, b := e.do("GET", "/v1/jobs/"+id+"/result?format=json", "")
	var res openapi.Result
	if code != 200 || json.Unmarshal(b, &res) != nil {
		t.Fatalf("result %d %s", code, b)
	}
	byGroup := make([][][]float64, groups)
	for _, p := range res.Points {
		if p.X == nil {
			continue
		}
		k, _ := strconv.Atoi(strings.TrimPrefix(p.Id, "A"))
		byGroup[k%groups] = append(byGroup[k%groups], []float64{*p.X, *p.Y, *p.Z})
	}
	checkColourGroups(t, byGroup, b)
}

// TestRunCommandSpoolsAboveSpoolAbove: --spool-above (here from the
// environment) sends a job's pixels to a file in --spool-dir, giving the
// table of a run in memory; an unusable --spool-dir fails the run naming it.
func TestRunCommandSpoolsAboveSpoolAbove(t *testing.T) {
	cat := newCatalogue(t, 12)
	dir := t.TempDir()
	runTo := func(out string, env map[string]string, extra ...string) error {
		args := append([]string{"--dataset-url", cat.srv.URL + "/data.tab", "--image-url-template", cat.srv.URL + "/img/{id}.png",
			"--method", "pca", "--image-width", "8", "--image-height", "8", "-o", out, "--quiet"}, extra...)
		env["TSNEMAP_ALLOW_PRIVATE_NETWORKS"] = "true"
		var stdout, stderr bytes.Buffer
		return runCommand(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	}
	memOut, spoolOut := filepath.Join(dir, "mem.tab"), filepath.Join(dir, "spool.tab")
	if err := runTo(memOut, map[string]string{}, "--spool-above", "0"); err != nil {
		t.Fatal(err)
	}
	spoolDir := t.TempDir()
	if err := runTo(spoolOut, map[string]string{"TSNEMAP_SPOOL_ABOVE": "1KB", "TSNEMAP_SPOOL_DIR": spoolDir}); err != nil {
		t.Fatal(err)
	}
	mem, _ := os.ReadFile(memOut)
	spooled, _ := os.ReadFile(spoolOut)
	if len(mem) == 0 || !bytes.Equal(mem, spooled) {
		t.Errorf("spooled table differs from the one in memory:\n%s\n---\n%s", spooled, mem)
	}
	missing := filepath.Join(spoolDir, "gone")
	err := runTo(filepath.Join(dir, "x.tab"), map[string]string{"TSNEMAP_SPOOL_ABOVE": "1KB"}, "--spool-dir", missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("run with a missing --spool-dir: %v, want an error naming %s", err, missing)
	}
}
