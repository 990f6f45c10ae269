package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

// env is a real API on a loopback port over a real job store on an
// embedded NATS, with a worker running jobs through a test runner.
type env struct {
	t     *testing.T
	srv   *httptest.Server
	store *jobs.Store
	api   *testkit.API
}

// testRunner stands in for the pipeline (which lives elsewhere): the
// dataset URL's path picks the behaviour.
func testRunner(ctx context.Context, job jobs.Job, tr *jobs.Tracker) (*jobs.Result, error) {
	tr.SetBackend("test backend")
	switch {
	case strings.Contains(job.Request.DatasetURL, "/slow"):
		tr.SetAtlas(ctx, testkit.AtlasOfRows())
		tr.SetStage(jobs.StageOptimizing)
		for i := 1; ; i++ {
			tr.UpdateProgress(func(p *jobs.Progress) { p.Iteration = i })
			tr.Embedding(jobs.Embedding{Iteration: i, Dimensions: 2, Rows: []int{0, 1}, Coordinates: []float32{float32(i), 0, 0, float32(i)}})
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	case strings.Contains(job.Request.DatasetURL, "/broken"):
		return nil, &jobs.Error{Code: jobs.CodeDatasetInvalid, Message: "the table has no header row"}
	}
	tr.SetStage(jobs.StageLoadingImages)
	f := []jobs.Failure{{Row: 1, ID: "b", URL: "http://img/b.png", Error: "http 404"}}
	if err := tr.SetFailures(ctx, f); err != nil {
		return nil, err
	}
	tr.SetAtlas(ctx, testkit.AtlasOfRows())
	dims := job.Request.Dimensions
	c := func(v float32) []float32 {
		out := make([]float32, dims)
		for i := range out {
			out[i] = v + float32(i)
		}
		return out
	}
	return &jobs.Result{
		Columns:    []string{"id", "title", "année"},
		Dimensions: dims,
		Rows: []jobs.ResultRow{
			{ID: "a", Values: []string{"a", "Tête, \"rouge\"", "1890"}, Coords: c(1.25)},
			{ID: "b", Values: []string{"b", "Night", "1901"}},
			{ID: "c", Values: []string{"c", "Sea\twave", ""}, Coords: c(-0.5)},
		},
		Failures: f,
	}, nil
}

type runnerFunc func(ctx context.Context, job jobs.Job, tr *jobs.Tracker) (*jobs.Result, error)

func (f runnerFunc) Run(ctx context.Context, job jobs.Job, tr *jobs.Tracker) (*jobs.Result, error) {
	return f(ctx, job, tr)
}

type denyPrivate struct{}

func (denyPrivate) ValidateURL(_ context.Context, raw string) error {
	if strings.Contains(raw, "169.254.") || strings.Contains(raw, "://10.") {
		return errors.New("address not allowed: private network")
	}
	return nil
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, jobs.EmbeddedConfig{}, nil)
}

// newEnvWith is newEnv with settings of the embedded NATS (DataDir is
// filled in) and of the API (edit changes the Config before New).
func newEnvWith(t *testing.T, ec jobs.EmbeddedConfig, edit func(*Config)) *env {
	t.Helper()
	store, h := newStack(t, ec, edit, true)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, store: store, api: testkit.NewAPI(t, srv.URL)}
}

// newStack starts an embedded NATS, a store on it, a worker running the
// test runner (if worker) and the API; it returns the store and the API's
// handler. Everything stops at the end of the test.
func newStack(t testing.TB, ec jobs.EmbeddedConfig, edit func(*Config), worker bool) (*jobs.Store, http.Handler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ec.DataDir = t.TempDir()
	emb, err := jobs.StartEmbedded(ctx, ec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	nc, err := emb.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	store, err := jobs.Open(ctx, nc, jobs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	quiet := testkit.QuietLogger()
	wctx, wcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if worker {
		w := jobs.NewWorker(store, runnerFunc(testRunner), jobs.WorkerConfig{Concurrency: 2, Logger: quiet})
		go func() { defer close(done); _ = w.Run(wctx) }()
	} else {
		close(done)
	}
	t.Cleanup(func() { wcancel(); <-done })

	if err := store.WatchIndex(wctx); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Jobs: store, URLs: denyPrivate{}, Backend: "cpu (2 threads)", MaxTimeout: time.Hour, Logger: quiet, Version: "test"}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return store, s.Handler()
}

// do sends a request and checks the answer against the spec: status,
// content type and body schema (testkit.API.Do).
func (e *env) do(method, path, body string, header ...string) (*http.Response, []byte) {
	e.t.Helper()
	return e.api.Do(method, path, body, header...)
}

func (e *env) submit(body string) openapi.Job {
	e.t.Helper()
	return e.api.Submit(body)
}

func (e *env) job(id string) openapi.Job {
	e.t.Helper()
	return e.api.Job(id)
}

func (e *env) waitStatus(id string, want openapi.JobStatus, within time.Duration) openapi.Job {
	e.t.Helper()
	return e.api.WaitJob(id, within, testkit.Is(want))
}

const okBody = `{"dataset_url":"https://museum.example/data.tab","image_url_template":"https://museum.example/img/{id}.jpg","seed":3}`

func TestSubmitDefaultsAndResultFormats(t *testing.T) {
	e := newEnv(t)
	j := e.submit(okBody)
	r, d := j.Request, jobs.DefaultRequest() // the defaults, which jobs' TestDefaultRequestMatchesSpec checks against the spec
	if r.IdColumn != d.IDColumn || string(r.Method) != d.Method || int(r.Dimensions) != d.Dimensions || r.Perplexity != d.Perplexity ||
		r.Iterations != d.Iterations || r.EarlyExaggeration != d.EarlyExaggeration || r.ExaggerationIterations != d.ExaggerationIterations ||
		string(r.Init) != d.Init || string(r.Backend) != d.Backend || r.ImageSize.Width != d.ImageSize.Width ||
		r.ImageSize.Height != d.ImageSize.Height || r.Seed != 3 || r.TimeoutSeconds != 3600 {
		t.Errorf("normalized request = %+v, want the defaults %+v", r, d)
	}
	if lr, err := r.LearningRate.AsLearningRate1(); err != nil || lr != "auto" {
		t.Errorf("learning_rate = %v, %v", lr, err)
	}
	if j.Status != "queued" || j.Links.Result != "/v1/jobs/"+j.Id+"/result" {
		t.Errorf("job = %+v", j)
	}
	done := e.waitStatus(j.Id, "succeeded", 10*time.Second)
	if done.Backend != "test backend" || done.Stage != "finished" || done.FinishedAt == nil {
		t.Errorf("finished = %+v", done)
	}

	res, tsv := e.do("GET", "/v1/jobs/"+j.Id+"/result", "")
	wantTSV := "id\ttitle\tannée\tx\ty\na\t\"Tête, \"\"rouge\"\"\"\t1890\t1.25\t2.25\nb\tNight\t1901\t\t\nc\t\"Sea\twave\"\t\t-0.5\t0.5\n"
	if res.StatusCode != 200 || string(tsv) != wantTSV || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/tab-separated-values") {
		t.Errorf("TSV: %d %s\n%q\nwant\n%q", res.StatusCode, res.Header.Get("Content-Type"), tsv, wantTSV)
	}
	res, csv := e.do("GET", "/v1/jobs/"+j.Id+"/result", "", "Accept", "text/csv")
	wantCSV := "id,title,année,x,y\na,\"Tête, \"\"rouge\"\"\",1890,1.25,2.25\nb,Night,1901,,\nc,Sea\twave,,-0.5,0.5\n"
	if res.StatusCode != 200 || string(csv) != wantCSV {
		t.Errorf("CSV:\n%q\nwant\n%q", csv, wantCSV)
	}
	res, js := e.do("GET", "/v1/jobs/"+j.Id+"/result?format=json", "", "Accept", "text/csv")
	var out openapi.Result
	if err := json.Unmarshal(js, &out); err != nil || res.StatusCode != 200 {
		t.Fatalf("JSON: %d %v %s", res.StatusCode, err, js)
	}
	if len(out.Points) != 3 || *out.Points[0].X != 1.25 || out.Points[1].X != nil || out.Points[2].Fields["title"] != "Sea\twave" ||
		len(out.Failures) != 1 || out.Failures[0].Error != "http 404" || out.Columns[2] != "année" {
		t.Errorf("JSON result = %s", js)
	}
	res, fl := e.do("GET", "/v1/jobs/"+j.Id+"/failures", "")
	if res.StatusCode != 200 || !strings.Contains(string(fl), `"http 404"`) {
		t.Errorf("failures: %d %s", res.StatusCode, fl)
	}
}

func TestThreeDimensions(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"dataset_url":"https://m.example/d.csv","image_url_column":"url","dimensions":3,"learning_rate":200}`)
	if lr, err := j.Request.LearningRate.AsLearningRate0(); err != nil || lr != 200 {
		t.Errorf("learning_rate = %v, %v", lr, err)
	}
	e.waitStatus(j.Id, "succeeded", 10*time.Second)
	_, tsv := e.do("GET", "/v1/jobs/"+j.Id+"/result?format=tsv", "")
	if first := strings.SplitN(string(tsv), "\n", 2)[0]; first != "id\ttitle\tannée\tx\ty\tz" {
		t.Errorf("header = %q", first)
	}
}

func TestErrorsAreProblems(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, method, path, body string
		status                   int
		field                    string
	}{
		{"missing dataset_url", "POST", "/v1/jobs", `{"image_url_template":"https://a.example/{id}"}`, 400, "dataset_url"},
		{"template without {id}", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_template":"https://a.example/x.jpg"}`, 400, "image_url_template"},
		{"template and column", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_template":"https://a.example/{id}","image_url_column":"u"}`, 400, "image_url_column"},
		{"neither template nor column", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d"}`, 400, "image_url_template"},
		{"perplexity zero", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_column":"u","perplexity":0}`, 400, "perplexity"},
		{"dimensions 4", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_column":"u","dimensions":4}`, 400, "dimensions"},
		{"image too small", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_column":"u","image_size":{"width":2,"height":100}}`, 400, "image_size.width"},
		{"unknown field", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_column":"u","perplexty":5}`, 400, "perplexty"},
		{"bad method", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_column":"u","method":"umap"}`, 400, "method"},
		{"bad learning rate", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_column":"u","learning_rate":"fast"}`, 400, "learning_rate"},
		{"negative limit", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_column":"u","limit":0}`, 400, "limit"},
		{"ftp url", "POST", "/v1/jobs", `{"dataset_url":"ftp://a.example/d","image_url_column":"u"}`, 400, "dataset_url"},
		{"not json", "POST", "/v1/jobs", `{"dataset_url":`, 400, "body"},
		{"wrong type", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_column":"u","iterations":"many"}`, 400, "iterations"},
		{"private dataset", "POST", "/v1/jobs", `{"dataset_url":"http://169.254.169.254/latest","image_url_column":"u"}`, 422, "dataset_url"},
		{"private images", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_template":"http://10.0.0.1/{id}"}`, 422, "image_url_template"},
		{"gpu without one", "POST", "/v1/jobs", `{"dataset_url":"https://a.example/d","image_url_column":"u","backend":"gpu"}`, 422, "backend"},
		{"unknown job", "GET", "/v1/jobs/01JD0000000000000000000000", "", 404, ""},
		{"bad id", "GET", "/v1/jobs/..%2Fx", "", 404, ""},
		{"unknown job result", "GET", "/v1/jobs/01JD0000000000000000000000/result", "", 404, ""},
		{"delete unknown", "DELETE", "/v1/jobs/01JD0000000000000000000000", "", 404, ""},
		{"bad list limit", "GET", "/v1/jobs?limit=0", "", 400, "limit"},
		{"bad status filter", "GET", "/v1/jobs?status=done", "", 400, "status"},
		{"bad format", "GET", "/v1/jobs/01JD0000000000000000000000/result?format=xlsx", "", 400, "format"},
		{"no route", "GET", "/v2/nothing", "", 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			res, b := e.do(c.method, c.path, c.body)
			if res.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, c.status, b)
			}
			var p openapi.Problem
			if err := json.Unmarshal(b, &p); err != nil || p.Status != c.status || p.Detail == "" || p.Title == "" || p.Type == "" {
				t.Fatalf("problem = %s (%v)", b, err)
			}
			if c.field == "" {
				return
			}
			if p.Errors == nil {
				t.Fatalf("no errors list: %s", b)
			}
			for _, f := range *p.Errors {
				if f.Field == c.field && f.Message != "" {
					return
				}
			}
			t.Errorf("no error names %q: %s", c.field, b)
		})
	}
}

func TestBodyLimitAndMediaType(t *testing.T) {
	e := newEnv(t)
	big := `{"dataset_url":"https://a.example/d","image_url_column":"` + strings.Repeat("u", 1_100_000) + `"}`
	res, b := e.do("POST", "/v1/jobs", big)
	if res.StatusCode != 413 {
		t.Errorf("big body: %d %s", res.StatusCode, b)
	}
	r2, b := e.do("POST", "/v1/jobs", okBody, "Content-Type", "text/plain")
	if r2.StatusCode != 415 {
		t.Errorf("text/plain body: %d %s", r2.StatusCode, b)
	}
}

func TestFailedJobAndResultConflict(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"dataset_url":"https://m.example/broken","image_url_column":"u"}`)
	f := e.waitStatus(j.Id, "failed", 10*time.Second)
	if f.Error == nil || f.Error.Code != "dataset_invalid" {
		t.Errorf("error = %+v", f.Error)
	}
	res, b := e.do("GET", "/v1/jobs/"+j.Id+"/result", "")
	if res.StatusCode != 409 {
		t.Errorf("result of failed job: %d %s", res.StatusCode, b)
	}
}

func TestCancelRunningAndDeleteFinished(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"dataset_url":"https://m.example/slow","image_url_column":"u"}`)
	e.waitStatus(j.Id, "running", 10*time.Second)
	t0 := time.Now()
	res, b := e.do("DELETE", "/v1/jobs/"+j.Id, "")
	if res.StatusCode != 202 {
		t.Fatalf("DELETE running: %d %s", res.StatusCode, b)
	}
	c := e.waitStatus(j.Id, "canceled", 2*time.Second)
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("canceled after %v", d)
	}
	if c.Error != nil {
		t.Errorf("canceled job has error %+v", c.Error)
	}
	res, b = e.do("GET", "/v1/jobs/"+j.Id+"/result", "")
	if res.StatusCode != 409 {
		t.Errorf("result of canceled job: %d %s", res.StatusCode, b)
	}
	if res, _ := e.do("DELETE", "/v1/jobs/"+j.Id, ""); res.StatusCode != 204 {
		t.Errorf("DELETE finished: %d", res.StatusCode)
	}
	if res, _ := e.do("GET", "/v1/jobs/"+j.Id, ""); res.StatusCode != 404 {
		t.Errorf("GET deleted: %d", res.StatusCode)
	}
	if res, _ := e.do("DELETE", "/v1/jobs/"+j.Id, ""); res.StatusCode != 404 {
		t.Errorf("DELETE again: %d", res.StatusCode)
	}
}

func TestListPagination(t *testing.T) {
	e := newEnv(t)
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.submit(okBody).Id)
	}
	// Newest first is the ids' order (milliseconds, then random bits, for
	// jobs submitted in the same millisecond).
	slices.Sort(ids)
	var got []string
	path := "/v1/jobs?limit=2"
	for page := 0; page < 10; page++ {
		res, b := e.do("GET", path, "")
		if res.StatusCode != 200 {
			t.Fatalf("list: %d %s", res.StatusCode, b)
		}
		var l openapi.JobList
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		if len(l.Jobs) > 2 {
			t.Fatalf("page of %d", len(l.Jobs))
		}
		for _, j := range l.Jobs {
			got = append(got, j.Id)
		}
		if l.NextPageToken == nil {
			break
		}
		path = "/v1/jobs?limit=2&page_token=" + *l.NextPageToken
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("listed %v, want %v", got, want)
	}
}

type sseEvent struct{ name, data string }

func readEvents(t *testing.T, r io.Reader, out chan<- sseEvent) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		case line == "" && ev.name != "":
			out <- ev
			ev = sseEvent{}
		}
	}
	close(out)
}

func TestEventsProgressEmbeddingDone(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"dataset_url":"https://m.example/slow","image_url_column":"u"}`)
	res, err := http.Get(e.srv.URL + "/v1/jobs/" + j.Id + "/events?embedding=1")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := make(chan sseEvent, 100)
	go readEvents(t, res.Body, events)
	counts := map[string]int{}
	timeout := time.After(15 * time.Second)
	canceled := false
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				if counts["done"] != 1 {
					t.Fatalf("stream ended without done: %v", counts)
				}
				if counts["progress"] < 2 || counts["embedding"] < 1 {
					t.Errorf("events: %v", counts)
				}
				return
			}
			counts[ev.name]++
			switch ev.name {
			case "progress", "done":
				var got openapi.Job
				if err := json.Unmarshal([]byte(ev.data), &got); err != nil || got.Id != j.Id {
					t.Fatalf("%s data = %s", ev.name, ev.data)
				}
				if ev.name == "done" && got.Status != "canceled" {
					t.Errorf("done with status %s", got.Status)
				}
			case "embedding":
				var snap openapi.EmbeddingSnapshot
				if err := json.Unmarshal([]byte(ev.data), &snap); err != nil || len(snap.Coordinates) != 4 {
					t.Fatalf("embedding data = %s", ev.data)
				}
			}
			// Once live coordinates have arrived, end the job: done must follow.
			if counts["embedding"] >= 1 && counts["progress"] >= 2 && !canceled {
				canceled = true
				go func() {
					req, _ := http.NewRequest("DELETE", e.srv.URL+"/v1/jobs/"+j.Id, nil)
					if r, err := http.DefaultClient.Do(req); err == nil {
						r.Body.Close()
					}
				}()
			}
		case <-timeout:
			t.Fatalf("events so far: %v", counts)
		}
	}
}

func TestEventsAfterTheEndSendDoneAtOnce(t *testing.T) {
	e := newEnv(t)
	j := e.submit(okBody)
	e.waitStatus(j.Id, "succeeded", 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/jobs/"+j.Id+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("event: done\ndata: {")) || bytes.Count(b, []byte("event: ")) != 1 {
		t.Errorf("stream = %q", b)
	}
}

func TestPageIsServedWhenConfigured(t *testing.T) {
	e := newEnv(t)
	if res, b := e.do("GET", "/", ""); res.StatusCode != 404 || !strings.Contains(string(b), "no web page") {
		t.Errorf("GET / without a page: %d %s", res.StatusCode, b)
	}
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<!doctype html><title>page "+r.URL.Path+"</title>")
	})
	s, err := New(Config{Jobs: e.store, Web: page, Logger: testkit.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, path := range []string{"/", "/static/app.js"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), "page "+path) {
			t.Errorf("GET %s: %d %s", path, res.StatusCode, b)
		}
	}
}

func TestServiceEndpoints(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/openapi.yaml", "/metrics"} {
		res, b := e.do("GET", p, "")
		if res.StatusCode != 200 || len(b) == 0 {
			t.Errorf("%s: %d", p, res.StatusCode)
		}
		switch p {
		case "/readyz":
			if !strings.Contains(string(b), `"cpu (2 threads)"`) {
				t.Errorf("readyz does not name the backend: %s", b)
			}
		case "/openapi.yaml":
			if !bytes.Equal(b, openapi.YAML) {
				t.Error("openapi.yaml differs from the embedded spec")
			}
		case "/metrics":
			if !strings.Contains(string(b), "tsnemap_jobs{status=\"queued\"}") || !strings.Contains(string(b), "tsnemap_http_requests_total") {
				t.Errorf("metrics lack the job gauges:\n%s", b)
			}
		}
	}
}
