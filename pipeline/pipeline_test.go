package pipeline

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
)

// groups of colours the test images come in; a map of them should keep
// each group together.
var groups = []color.RGBA{{220, 30, 30, 255}, {30, 200, 40, 255}, {30, 40, 220, 255}, {240, 230, 40, 255}}

// encodeImage is a 16×16 swatch of colour c, as PNG for even variants and
// JPEG for odd ones.
func encodeImage(t *testing.T, c color.RGBA, variant int) []byte {
	t.Helper()
	img := testkit.Swatch(c, 16, 5, variant)
	if variant%2 == 0 {
		return testkit.EncodePNG(t, img)
	}
	return testkit.EncodeJPEG(t, img, 90)
}

// imageServer serves /data.tab (n rows: id, group) and the image of each
// row at /img/{id}; the ids in broken get a broken answer instead.
// Requests for the table or an image wait for the matching gate, if set,
// or for the request's end.
type imageServer struct {
	srv        *httptest.Server
	tableGate  chan struct{}
	imageGate  chan struct{}
	imagesSeen atomic.Int64
	inFlight   atomic.Int64
}

func newImageServer(t *testing.T, n int, broken map[string]string) *imageServer {
	t.Helper()
	s := &imageServer{}
	files := map[string][]byte{}
	var tab strings.Builder
	tab.WriteString("id\tgroup\n")
	for i := range n {
		id := fmt.Sprintf("R%02d", i)
		fmt.Fprintf(&tab, "%s\t%d\n", id, i%len(groups))
		files["/img/"+id] = encodeImage(t, groups[i%len(groups)], i)
	}
	files["/data.tab"] = []byte(tab.String())
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		gate := s.tableGate
		if strings.HasPrefix(r.URL.Path, "/img/") {
			s.imagesSeen.Add(1)
			gate = s.imageGate
		}
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		switch broken[strings.TrimPrefix(r.URL.Path, "/img/")] {
		case "404":
			http.NotFound(w, r)
			return
		case "truncated":
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(files[r.URL.Path][:40])
			return
		case "html":
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html><body>not here</body></html>")
			return
		}
		testkit.Files(files).ServeHTTP(w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// newPipeline is a pipeline for the test servers; mods change its
// loader's configuration.
func newPipeline(t *testing.T, mods ...func(*loader.Config)) *Pipeline {
	t.Helper()
	cfg := loader.Config{AllowPrivateNetworks: true, MaxAttempts: 1}
	for _, m := range mods {
		m(&cfg)
	}
	l, err := loader.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pipeline{Loader: l, CPU: cpu.New(2), Log: testkit.QuietLogger()}
	t.Cleanup(p.Close)
	return p
}

// request is a small, quick job on the test server's table: the defaults
// but for the image size, perplexity (for 24 to 40 images) and seed.
func request(base string) jobs.Request {
	r := jobs.DefaultRequest()
	r.DatasetURL, r.ImageURLTemplate = base+"/data.tab", base+"/img/{id}"
	r.ImageSize = jobs.ImageSize{Width: 8, Height: 8}
	r.Perplexity, r.Seed = 5, 1
	return r
}

// recorder keeps every state a local tracker reports.
type recorder struct {
	mu   sync.Mutex
	seen []jobs.Job
}

func (r *recorder) report(j jobs.Job) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, j)
}

func (r *recorder) last() jobs.Job {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.seen) == 0 {
		return jobs.Job{}
	}
	return r.seen[len(r.seen)-1]
}

// stages lists the stages reported, each once, in the order first seen.
func (r *recorder) stages() []jobs.Stage {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []jobs.Stage
	for _, j := range r.seen {
		if len(out) == 0 || out[len(out)-1] != j.Stage {
			out = append(out, j.Stage)
		}
	}
	return out
}

func (r *recorder) waitStage(t *testing.T, s jobs.Stage) {
	t.Helper()
	testkit.Eventually(t, 20*time.Second, func() (bool, string) {
		st := r.stages()
		return slices.Contains(st, s), fmt.Sprintf("stages so far %v", st)
	}, "stage %s", s)
}

// run runs req on p as job "J1" with a local tracker and returns what Run
// returned and the tracker's reports (the last one made by Close).
func run(ctx context.Context, p *Pipeline, req jobs.Request, rec *recorder) (*jobs.Result, error) {
	job := jobs.Job{ID: "J1", Status: jobs.StatusRunning, Stage: jobs.StageQueued, Request: req}
	tctx, stop := context.WithCancel(ctx)
	defer stop()
	tr := jobs.NewLocalTracker(tctx, job, testkit.QuietLogger(), rec.report)
	defer tr.Close()
	return p.Run(ctx, job, tr)
}

// groupOf reads the group column of a result row.
func groupOf(t *testing.T, row jobs.ResultRow) string {
	t.Helper()
	if len(row.Values) != 2 {
		t.Fatalf("row %s: values %q, want id and group", row.ID, row.Values)
	}
	return row.Values[1]
}

// nearestSameGroup is the share of mapped rows whose nearest mapped
// neighbour is of the same group.
func nearestSameGroup(t *testing.T, res *jobs.Result) float64 {
	t.Helper()
	same, mapped := 0, 0
	for i, a := range res.Rows {
		if a.Coords == nil {
			continue
		}
		mapped++
		best, bestD := -1, math.Inf(1)
		for j, b := range res.Rows {
			if j == i || b.Coords == nil {
				continue
			}
			d := math.Hypot(float64(a.Coords[0]-b.Coords[0]), float64(a.Coords[1]-b.Coords[1]))
			if d < bestD {
				best, bestD = j, d
			}
		}
		if best >= 0 && groupOf(t, res.Rows[best]) == groupOf(t, a) {
			same++
		}
	}
	return float64(same) / float64(mapped)
}

func TestRunMapsEveryRow(t *testing.T) {
	const n = 40
	srv := newImageServer(t, n, nil)
	var rec recorder
	res, err := run(context.Background(), newPipeline(t), request(srv.srv.URL), &rec)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Columns, []string{"id", "group"}) || res.Dimensions != 2 || len(res.Rows) != n || len(res.Failures) != 0 {
		t.Fatalf("result: columns %q, dimensions %d, %d rows, failures %v; want [id group], 2, %d rows, none",
			res.Columns, res.Dimensions, len(res.Rows), res.Failures, n)
	}
	for i, row := range res.Rows {
		if want := fmt.Sprintf("R%02d", i); row.ID != want || row.Values[0] != want {
			t.Fatalf("row %d: id %q values %q, want %s in table order", i, row.ID, row.Values, want)
		}
		if len(row.Coords) != 2 || math.IsNaN(float64(row.Coords[0])) || math.IsNaN(float64(row.Coords[1])) {
			t.Fatalf("row %d: coords %v, want two numbers", i, row.Coords)
		}
	}
	if f := nearestSameGroup(t, res); f < 0.95 {
		t.Errorf("%.0f%% of points have a nearest neighbour of their own colour, want ≥ 95%%", 100*f)
	}
}

func TestRunBrokenImageFailsItsRow(t *testing.T) {
	const n = 40
	broken := map[string]string{"R03": "404", "R10": "truncated", "R21": "html"}
	srv := newImageServer(t, n, broken)
	var rec recorder
	res, err := run(context.Background(), newPipeline(t), request(srv.srv.URL), &rec)
	if err != nil {
		t.Fatalf("a job with %d broken images of %d failed: %v", len(broken), n, err)
	}
	var failed []string
	for _, f := range res.Failures {
		failed = append(failed, f.ID)
		if res.Rows[f.Row].ID != f.ID || f.Error == "" || !strings.HasSuffix(f.URL, "/img/"+f.ID) {
			t.Errorf("failure %+v: want its row, its URL and a reason", f)
		}
	}
	if want := []string{"R03", "R10", "R21"}; !slices.Equal(failed, want) {
		t.Fatalf("failures %v, want %v in row order", failed, want)
	}
	for _, row := range res.Rows {
		if _, bad := broken[row.ID]; bad != (row.Coords == nil) {
			t.Errorf("row %s: coords %v; want none exactly for the broken images", row.ID, row.Coords)
		}
	}
	if p := rec.last().Progress; p.ImagesTotal != n || p.ImagesLoaded != n-len(broken) || p.ImagesFailed != len(broken) {
		t.Errorf("progress %+v: want %d images, %d loaded, %d failed", p, n, n-len(broken), len(broken))
	}
}

func TestRunFailsWithCode(t *testing.T) {
	srv := newImageServer(t, 12, map[string]string{"R00": "404", "R01": "404", "R02": "404", "R03": "404",
		"R04": "404", "R05": "404", "R06": "404", "R07": "404", "R08": "404", "R09": "404", "R10": "404", "R11": "404"})
	ok := newImageServer(t, 12, nil)
	cases := []struct {
		name string
		edit func(r *jobs.Request)
		code string
	}{
		{"table missing", func(r *jobs.Request) { r.DatasetURL = ok.srv.URL + "/nothing.tab" }, jobs.CodeDatasetUnreachable},
		{"no id column", func(r *jobs.Request) { r.IDColumn = "inventory" }, jobs.CodeDatasetInvalid},
		// A perplexity the 12 rows allow, so the images are fetched.
		{"every image broken", func(r *jobs.Request) { *r = request(srv.srv.URL); r.Perplexity = 2 }, jobs.CodeNoImages},
		{"perplexity too large", func(r *jobs.Request) { r.Perplexity = 30 }, jobs.CodePerplexityTooLarge},
		{"gpu on a worker without one", func(r *jobs.Request) { r.Backend = "gpu" }, jobs.CodeBackendUnavailable},
	}
	p := newPipeline(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := request(ok.srv.URL)
			tc.edit(&req)
			var rec recorder
			_, err := run(context.Background(), p, req, &rec)
			var je *jobs.Error
			if !errors.As(err, &je) || je.Code != tc.code || je.Message == "" {
				t.Fatalf("error %v, want a jobs.Error with code %s and a message", err, tc.code)
			}
			if strings.HasPrefix(je.Message, "dataset ") {
				t.Errorf("message %q repeats the code", je.Message)
			}
			if tc.code == jobs.CodePerplexityTooLarge && rec.last().Progress.ImagesTotal != 0 {
				t.Errorf("perplexity too large for the table: images were fetched (%+v)", rec.last().Progress)
			}
		})
	}
}

// gatedBackend is the CPU backend with a gate before the first step of
// each engine stage, so a test can see the stage reported while the stage
// waits.
type gatedBackend struct {
	embed.Backend
	reducing, affinities chan struct{}
}

func (g *gatedBackend) ColumnMeans(ctx context.Context, x embed.Data, dst []float64) error {
	if err := wait(ctx, g.reducing); err != nil {
		return err
	}
	return g.Backend.ColumnMeans(ctx, x, dst)
}

func (g *gatedBackend) KNearest(ctx context.Context, x []float32, n, d, k int, m embed.NeighborMethod, seed int64) (*embed.Neighbors, error) {
	if err := wait(ctx, g.affinities); err != nil {
		return nil, err
	}
	return g.Backend.KNearest(ctx, x, n, d, k, m, seed)
}

func wait(ctx context.Context, gate chan struct{}) error {
	select {
	case <-gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestRunReportsStagesAndProgress(t *testing.T) {
	const n = 24
	srv := newImageServer(t, n, map[string]string{"R05": "404"})
	srv.tableGate, srv.imageGate = make(chan struct{}), make(chan struct{})
	p := newPipeline(t)
	gb := &gatedBackend{Backend: p.CPU, reducing: make(chan struct{}), affinities: make(chan struct{})}
	p.CPU = gb
	req := request(srv.srv.URL)
	req.Perplexity = 4
	var rec recorder
	type outcome struct {
		res *jobs.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := run(context.Background(), p, req, &rec)
		done <- outcome{res, err}
	}()
	for _, step := range []struct {
		stage jobs.Stage
		gate  chan struct{}
	}{
		{jobs.StageFetchingDataset, srv.tableGate},
		{jobs.StageLoadingImages, srv.imageGate},
		{jobs.StageReducing, gb.reducing},
		{jobs.StageComputingAffinities, gb.affinities},
	} {
		rec.waitStage(t, step.stage)
		if step.stage == jobs.StageLoadingImages {
			if got := rec.last().Progress.ImagesTotal; got != n {
				t.Errorf("while loading: images_total %d, want %d", got, n)
			}
		}
		close(step.gate)
	}
	out := <-done
	if out.err != nil {
		t.Fatal(out.err)
	}
	want := []jobs.Stage{jobs.StageFetchingDataset, jobs.StageLoadingImages, jobs.StageReducing, jobs.StageComputingAffinities, jobs.StageOptimizing}
	if got := rec.stages(); !slices.Equal(got, want) {
		t.Errorf("stages %v, want %v", got, want)
	}
	last := rec.last()
	pr := last.Progress
	if pr.ImagesTotal != n || pr.ImagesLoaded != n-1 || pr.ImagesFailed != 1 {
		t.Errorf("images: %d total, %d loaded, %d failed; want %d, %d, 1", pr.ImagesTotal, pr.ImagesLoaded, pr.ImagesFailed, n, n-1)
	}
	if pr.Iteration != req.Iterations || pr.Iterations != req.Iterations || pr.KLDivergence == nil || !(*pr.KLDivergence >= 0) {
		t.Errorf("optimiser: iteration %d of %d, KL %v; want %d of %d and a KL ≥ 0", pr.Iteration, pr.Iterations, pr.KLDivergence, req.Iterations, req.Iterations)
	}
	if !strings.HasPrefix(last.Backend, "cpu") {
		t.Errorf("backend %q, want the CPU's name", last.Backend)
	}
}

func TestRunCancelled(t *testing.T) {
	cases := []struct {
		name  string
		gated bool       // images never arrive
		stage jobs.Stage // cancel once this stage is reported
		spool bool       // the pixels go to a spool file
	}{
		{"while loading images", true, jobs.StageLoadingImages, false},
		{"while optimizing", false, jobs.StageOptimizing, false},
		{"while loading images into a spool", true, jobs.StageLoadingImages, true},
		{"while optimizing from a spool", false, jobs.StageOptimizing, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newImageServer(t, 40, nil)
			if tc.gated {
				srv.imageGate = make(chan struct{})
			}
			req := request(srv.srv.URL)
			req.Iterations = 100000 // far more than the test waits for
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			dir := t.TempDir()
			p := newPipeline(t, func(c *loader.Config) {
				if c.SpoolAbove, c.SpoolDir = -1, dir; tc.spool {
					c.SpoolAbove = 1
				}
			})
			var rec recorder
			done := make(chan error, 1)
			go func() {
				_, err := run(ctx, p, req, &rec)
				done <- err
			}()
			rec.waitStage(t, tc.stage)
			if tc.gated {
				testkit.Eventually(t, 10*time.Second, func() (bool, string) {
					return srv.imagesSeen.Load() > 0, "no image asked for yet"
				})
				if n := testkit.OpenFilesIn(t, dir); tc.spool && n != 1 {
					t.Errorf("%d spool files open while loading, want 1", n)
				}
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("Run after cancel: %v, want context.Canceled", err)
			}
			testkit.Eventually(t, 5*time.Second, func() (bool, string) {
				n := srv.inFlight.Load()
				return n == 0, fmt.Sprintf("%d requests still open", n)
			}, "downloads after cancel")
			if it := rec.last().Progress.Iteration; it >= req.Iterations {
				t.Errorf("ran to iteration %d of %d after cancel", it, req.Iterations)
			}
			if n := testkit.OpenFilesIn(t, dir); n != 0 {
				t.Errorf("%d spool files still open after cancel", n)
			}
		})
	}
}
