package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/openapi"
)

// growingCatalogue serves tables the test sets (/t/NAME.tab, with an ETag
// and a 304 to a matching If-None-Match) and a PNG for every id
// (/img/ID.png) in the colour group of its number; ids starting GONE
// answer 404 and ids starting SLOW never answer.
type growingCatalogue struct {
	srv         *httptest.Server
	mu          sync.Mutex
	tables      map[string]string
	fetches     atomic.Int64 // of tables
	notModified atomic.Int64 // tables answered 304
}

func newGrowingCatalogue(t *testing.T) *growingCatalogue {
	c := &growingCatalogue{tables: map[string]string{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name, ok := strings.CutPrefix(r.URL.Path, "/t/"); ok {
			c.mu.Lock()
			body, ok := c.tables[name]
			c.mu.Unlock()
			if !ok {
				http.NotFound(w, r)
				return
			}
			c.fetches.Add(1)
			etag := fmt.Sprintf(`"%x"`, sha256.Sum256([]byte(body)))
			if r.Header.Get("If-None-Match") == etag {
				c.notModified.Add(1)
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", etag)
			w.Write([]byte(body))
			return
		}
		id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/img/"), ".png")
		switch {
		case strings.HasPrefix(id, "GONE"):
			http.NotFound(w, r)
			return
		case strings.HasPrefix(id, "SLOW"):
			<-r.Context().Done()
			return
		}
		var n int
		fmt.Sscanf(id[1:], "%d", &n)
		w.Header().Set("Content-Type", "image/png")
		w.Write(testkit.EncodePNG(t, testkit.Swatch(groupColor(n%groups), 24, 7, n)))
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *growingCatalogue) set(name string, ids ...string) {
	var b bytes.Buffer
	b.WriteString("id\ttitle\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%s\tpicture %s\n", id, id)
	}
	c.mu.Lock()
	c.tables[name] = b.String()
	c.mu.Unlock()
}

func ids(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return out
}

func (c *growingCatalogue) request(table string, extra string) string {
	return fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"perplexity":5,"iterations":300,"image_size":{"width":8,"height":8}%s}`,
		c.srv.URL+"/t/"+table, c.srv.URL+"/img/{id}.png", extra)
}

// resultRows reads a job's result table: id → "x\ty".
func growResult(t *testing.T, e *e2e, id string) (order []string, xy map[string]string) {
	t.Helper()
	code, tsv := e.do("GET", "/v1/jobs/"+id+"/result", "")
	if code != 200 {
		t.Fatalf("result of %s: %d %s", id, code, tsv)
	}
	lines := strings.Split(strings.TrimSuffix(string(tsv), "\n"), "\n")
	if !strings.HasPrefix(lines[0], "id\ttitle\tx\ty") {
		t.Fatalf("header %q", lines[0])
	}
	xy = map[string]string{}
	for _, line := range lines[1:] {
		f := strings.Split(line, "\t")
		order = append(order, f[0])
		xy[f[0]] = f[2] + "\t" + f[3]
	}
	return order, xy
}

func succeeded(t *testing.T, e *e2e, id string) openapi.Job {
	t.Helper()
	j := e.wait(id, 90*time.Second, ended)
	if j.Status != "succeeded" {
		t.Fatalf("job %s: %s %+v", id, j.Status, j.Error)
	}
	return j
}

// An addition keeps every base row's coordinates bitwise (the result
// formats float32 round-trip), lists the base's rows first and places the
// new ones; one with nothing new succeeds with the base's rows; additions
// chain.
func TestAdditionKeepsTheBaseMap(t *testing.T) {
	cat := newGrowingCatalogue(t)
	e := startE2E(t, true)
	cat.set("base.tab", ids("A", 0, 40)...)
	baseID := e.submit(cat.request("base.tab", ""))
	succeeded(t, e, baseID)
	baseOrder, baseXY := growResult(t, e, baseID)

	cat.set("more.tab", append(ids("B", 40, 52), ids("A", 0, 40)...)...)
	addID := e.submit(cat.request("more.tab", fmt.Sprintf(`,"base_job_id":%q`, baseID)))
	j := succeeded(t, e, addID)
	if j.Request.BaseJobId == nil || *j.Request.BaseJobId != baseID {
		t.Errorf("the addition's request does not name its base: %+v", j.Request.BaseJobId)
	}
	order, xy := growResult(t, e, addID)
	if len(order) != 52 {
		t.Fatalf("addition has %d rows, want 40 base + 12 new", len(order))
	}
	for i, id := range baseOrder {
		if order[i] != id || xy[id] != baseXY[id] {
			t.Fatalf("row %d: %s at %q, want base row %s at %q", i, order[i], xy[order[i]], id, baseXY[id])
		}
	}
	for _, id := range order[40:] {
		if !strings.HasPrefix(id, "B") || xy[id] == "\t" {
			t.Errorf("new row %s has coordinates %q", id, xy[id])
		}
	}
	code, ab := e.do("GET", "/v1/jobs/"+addID+"/atlas", "")
	if code != 200 || !strings.Contains(string(ab), `"rows":52`) || strings.Count(string(ab), `"row":`) != 52 {
		t.Errorf("the addition's thumbnails do not cover base and new rows: %d %d cells, %s", code, strings.Count(string(ab), `"row":`), ab[len(ab)-300:])
	}

	// Nothing new: succeeded, the base's rows as they were.
	allOld := e.submit(cat.request("base.tab", fmt.Sprintf(`,"base_job_id":%q`, baseID)))
	succeeded(t, e, allOld)
	o2, xy2 := growResult(t, e, allOld)
	if len(o2) != 40 || xy2["A007"] != baseXY["A007"] {
		t.Errorf("all-existing addition: %d rows, A007 at %q want %q", len(o2), xy2["A007"], baseXY["A007"])
	}

	// A chain: an addition to the addition keeps both earlier maps' rows.
	cat.set("more2.tab", append(ids("A", 0, 40), append(ids("B", 40, 52), ids("C", 60, 66)...)...)...)
	chainID := e.submit(cat.request("more2.tab", fmt.Sprintf(`,"base_job_id":%q`, addID)))
	succeeded(t, e, chainID)
	o3, xy3 := growResult(t, e, chainID)
	if len(o3) != 58 {
		t.Fatalf("chain has %d rows, want 58", len(o3))
	}
	for i, id := range order {
		if o3[i] != id || xy3[id] != xy[id] {
			t.Fatalf("chain row %d: %s at %q, want %s at %q", i, o3[i], xy3[o3[i]], id, xy[id])
		}
	}
}

// Refusals at submit: a deleted base is 404, one still running or without
// state 409, a different image size or metric 400 naming the field.
func TestAdditionRefusedAtSubmit(t *testing.T) {
	cat := newGrowingCatalogue(t)
	e := startE2E(t, true)
	cat.set("base.tab", ids("A", 0, 20)...)
	baseID := e.submit(cat.request("base.tab", ""))
	succeeded(t, e, baseID)
	for _, tc := range []struct {
		name, extra, field string
		code               int
	}{
		{"image size", `,"image_size":{"width":16,"height":16}`, "image_size", 400},
		{"metric", `,"metric":"cosine"`, "metric", 400},
	} {
		body := strings.Replace(cat.request("base.tab", fmt.Sprintf(`,"base_job_id":%q`, baseID)), `,"image_size":{"width":8,"height":8}`, "", 1)
		body = strings.TrimSuffix(body, "}") + tc.extra + "}"
		code, b := e.do("POST", "/v1/jobs", body)
		if code != tc.code || !strings.Contains(string(b), `"field":"`+tc.field+`"`) {
			t.Errorf("%s: %d %s, want %d naming %s", tc.name, code, b, tc.code, tc.field)
		}
	}
	cat.set("slow.tab", "SLOW1", "SLOW2", "SLOW3", "SLOW4", "SLOW5")
	running := e.submit(cat.request("slow.tab", ""))
	if code, b := e.do("POST", "/v1/jobs", cat.request("base.tab", fmt.Sprintf(`,"base_job_id":%q`, running))); code != 409 {
		t.Errorf("base not succeeded: %d %s, want 409", code, b)
	}
	e.do("DELETE", "/v1/jobs/"+running, "")
	if code, _ := e.do("DELETE", "/v1/jobs/"+baseID, ""); code != 204 {
		t.Fatalf("DELETE base: %d", code)
	}
	if code, b := e.do("POST", "/v1/jobs", cat.request("base.tab", fmt.Sprintf(`,"base_job_id":%q`, baseID))); code != 404 {
		t.Errorf("deleted base: %d %s, want 404", code, b)
	}
}

// An addition that fails (every new image 404) or is cancelled leaves the
// base's result and its use as a base as they were.
func TestFailedOrCancelledAdditionLeavesBase(t *testing.T) {
	cat := newGrowingCatalogue(t)
	e := startE2E(t, true)
	cat.set("base.tab", ids("A", 0, 20)...)
	baseID := e.submit(cat.request("base.tab", ""))
	succeeded(t, e, baseID)
	_, before := growResult(t, e, baseID)

	cat.set("gone.tab", append(ids("A", 0, 20), "GONE1", "GONE2")...)
	failed := e.submit(cat.request("gone.tab", fmt.Sprintf(`,"base_job_id":%q`, baseID)))
	if j := e.wait(failed, 60*time.Second, ended); j.Status != "failed" {
		t.Errorf("addition of only broken images: %s", j.Status)
	}
	cat.set("slow.tab", append(ids("A", 0, 20), "SLOW1")...)
	slow := e.submit(cat.request("slow.tab", fmt.Sprintf(`,"base_job_id":%q`, baseID)))
	e.wait(slow, 30*time.Second, func(j openapi.Job) bool { return j.Stage == "loading_images" })
	if code, b := e.do("DELETE", "/v1/jobs/"+slow, ""); code != 202 {
		t.Fatalf("cancel addition: %d %s", code, b)
	}
	e.wait(slow, 10*time.Second, func(j openapi.Job) bool { return j.Status == "canceled" })

	_, after := growResult(t, e, baseID)
	for id, v := range before {
		if after[id] != v {
			t.Errorf("base row %s moved from %q to %q", id, v, after[id])
		}
	}
	// Still a base.
	cat.set("ok.tab", append(ids("A", 0, 20), "B030")...)
	succeeded(t, e, e.submit(cat.request("ok.tab", fmt.Sprintf(`,"base_job_id":%q`, baseID))))
}

// tsnemap run writes the map's state beside its result, and run --base
// adds to it without a server: the base rows keep their x, y (the same
// text, so the same float32), the new ones follow; a flag that
// contradicts the base is a usage error naming it.
func TestRunCommandBase(t *testing.T) {
	cat := newGrowingCatalogue(t)
	cat.set("base.tab", ids("A", 0, 24)...)
	cat.set("more.tab", append(ids("A", 0, 24), ids("B", 24, 30)...)...)
	dir := t.TempDir()
	env := map[string]string{"TSNEMAP_ALLOW_PRIVATE_NETWORKS": "true"}
	run := func(table, out string, extra ...string) error {
		args := append([]string{"--dataset-url", cat.srv.URL + "/t/" + table, "--image-url-template", cat.srv.URL + "/img/{id}.png",
			"--perplexity", "5", "--iterations", "300", "-o", out, "--quiet"}, extra...)
		var stdout, stderr bytes.Buffer
		return runCommand(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	}
	if err := run("base.tab", dir+"/base.tab", "--image-width", "8", "--image-height", "8"); err != nil {
		t.Fatal(err)
	}
	if err := run("more.tab", dir+"/more.tab", "--base", dir+"/base.tab.state"); err != nil {
		t.Fatal(err)
	}
	read := func(path string) []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	}
	base, more := read(dir+"/base.tab"), read(dir+"/more.tab")
	if len(more) != 31 || more[0] != base[0] {
		t.Fatalf("addition has %d lines, header %q (base %q)", len(more), more[0], base[0])
	}
	for i := 1; i < len(base); i++ {
		b, m := strings.Split(base[i], "\t"), strings.Split(more[i], "\t")
		if strings.Join(b[:4], "\t") != strings.Join(m[:4], "\t") {
			t.Errorf("row %d: base %q, addition %q", i, base[i], more[i])
		}
	}
	if f := strings.Split(more[30], "\t"); f[0] != "B029" || f[2] == "" || f[3] == "" {
		t.Errorf("last new row %q", more[30])
	}
	if _, err := os.Stat(dir + "/more.tab.state"); err != nil {
		t.Errorf("no state beside the addition (for a chain): %v", err)
	}
	err := run("more.tab", dir+"/bad.tab", "--base", dir+"/base.tab.state", "--image-width", "16")
	if err == nil || !strings.Contains(err.Error(), "--image-width") {
		t.Errorf("a width that contradicts the base: %v", err)
	}
}
