package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/pipeline"
)

// startFollowService runs a service on dir that lets jobs follow every
// second; stop ends it (its store stays in dir).
func startFollowService(t *testing.T, dir string) (e *e2e, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := common{dataDir: dir, backend: "cpu", threads: 2, concurrency: 1, maxTimeout: time.Hour,
		retention: time.Hour, maxDeliveries: 3, allowPrivate: true, natsReplicas: 1, minFollow: time.Second, maxFollow: time.Hour}
	svc, err := startService(ctx, c, "127.0.0.1:0", false, testkit.QuietLogger())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.wait(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &e2e{t: t, url: svc.url, api: testkit.NewAPI(t, svc.url)}, stop
}

// addedEvents reads the job's event stream and sends each `added` event.
func addedEvents(t *testing.T, url, id string) <-chan pipeline.Added {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/jobs/"+id+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan pipeline.Added, 16)
	go func() {
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				event = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok && event == "added" {
				var a pipeline.Added
				if json.Unmarshal([]byte(v), &a) == nil {
					ch <- a
				}
			}
		}
	}()
	return ch
}

func waitAdded(t *testing.T, ch <-chan pipeline.Added, within time.Duration) pipeline.Added {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(within):
		t.Fatalf("no added event within %v", within)
	}
	return pipeline.Added{}
}

// A followed table that grows, answers 304 while unchanged, loses a row
// and grows again across a restart of the service: every change reaches
// the job's result (base rows unmoved) and its event stream.
func TestFollowGrowsTheMapAcrossRestart(t *testing.T) {
	cat := newGrowingCatalogue(t)
	dir := t.TempDir()
	e, stop := startFollowService(t, dir)
	cat.set("f.tab", ids("A", 0, 30)...)
	id := e.submit(cat.request("f.tab", `,"follow_interval_seconds":1`))
	succeeded(t, e, id)
	_, first := growResult(t, e, id)
	events := addedEvents(t, e.url, id)

	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		return cat.notModified.Load() > 0, fmt.Sprintf("%d fetches, none answered 304", cat.fetches.Load())
	})
	cat.set("f.tab", append(ids("A", 0, 30), ids("B", 30, 35)...)...)
	a := waitAdded(t, events, 60*time.Second)
	if len(a.Rows) != 5 || a.Rows[0].ID != "B030" || a.Rows[0].Row != 30 || len(a.Rows[0].Coords) != 2 || len(a.Removed) != 0 {
		t.Fatalf("first added event: %+v", a)
	}
	order, xy := growResult(t, e, id)
	if len(order) != 35 {
		t.Fatalf("result has %d rows after the table grew, want 35", len(order))
	}
	for k, v := range first {
		if xy[k] != v {
			t.Errorf("row %s moved from %q to %q", k, v, xy[k])
		}
	}

	cat.set("f.tab", append(ids("A", 1, 30), ids("B", 30, 36)...)...)
	a = waitAdded(t, events, 60*time.Second)
	if len(a.Rows) != 1 || a.Rows[0].ID != "B035" || fmt.Sprint(a.Removed) != "[A000]" {
		t.Fatalf("second added event: %+v", a)
	}
	code, tsv := e.do("GET", "/v1/jobs/"+id+"/result", "")
	if code != 200 || !strings.Contains(string(tsv), "\tremoved\n") || !strings.Contains(strings.Split(string(tsv), "\n")[1], "\t1") {
		t.Fatalf("result after a row left the table: %d %.200s", code, tsv)
	}

	// Restart: the following is in the store, not in the stopped process.
	stop()
	cat.set("f.tab", append(ids("A", 1, 30), ids("B", 30, 37)...)...)
	e, _ = startFollowService(t, dir)
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		order, _ := growResult(t, e, id)
		return len(order) == 37, fmt.Sprintf("%d rows", len(order))
	})
	_, xy = growResult(t, e, id)
	for k, v := range first {
		if xy[k] != v {
			t.Errorf("after the restart row %s moved from %q to %q", k, v, xy[k])
		}
	}
	if code, _ := e.do("DELETE", "/v1/jobs/"+id, ""); code != 204 {
		t.Errorf("DELETE followed job: %d", code)
	}
}
