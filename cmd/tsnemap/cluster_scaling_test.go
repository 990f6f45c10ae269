package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// TestClusterScaling measures how loading scales with workers: images
// per second of one sharded job, with 1, 2 and 3 workers, from a fixture
// that answers each image after 100 ms, with a per-host limit of 16
// (cluster-wide), from one host and from twelve (loopback addresses
// 127.0.0.1 to 127.0.0.12). A measurement, not a test: it runs only with
// TSNEMAP_SCALING=1 and reports with t.Log (see docs/cluster.md).
func TestClusterScaling(t *testing.T) {
	if os.Getenv("TSNEMAP_SCALING") != "1" {
		t.Skip("a measurement: set TSNEMAP_SCALING=1 to run it")
	}
	for _, tc := range []struct {
		name          string
		hosts, images int
		perWorker     bool // --cluster-host-limit=false: 16 per worker
	}{
		{"one-host", 1, 2000, false},
		{"twelve-hosts", 12, 6000, false},
		{"one-host-per-worker-limit", 1, 3000, true},
	} {
		t.Run(tc.name, func(t *testing.T) { measureScaling(t, tc.hosts, tc.images, tc.perWorker) })
	}
}

func measureScaling(t *testing.T, hosts, images int, perWorker bool) {
	cat := newBigCatalogue(t, images)
	table := multiHostTable(t, cat, hosts)
	for workers := 1; workers <= 3; workers++ {
		c := startWorkers(t, workers, "--max-per-host", "16", fmt.Sprintf("--cluster-host-limit=%v", !perWorker))
		id := postJob(t, c.api, fmt.Sprintf(`{"dataset_url":"%s","image_url_column":"url","image_size":{"width":8,"height":8},"method":"pca","shard_size":250}`, table))
		waitJob(t, c.api, id, 300*time.Second, jobEnded)
		j := testkit.NewAPI(t, c.api).Job(id)
		if j.Status != "succeeded" || j.History == nil {
			t.Fatalf("job %s: %+v", j.Status, j.Error)
		}
		var start, end time.Time
		for _, e := range *j.History {
			switch e.Event {
			case "started":
				start = e.At
			case "shard_loaded":
				end = e.At
			}
		}
		secs := end.Sub(start).Seconds()
		t.Logf("scaling: hosts=%d cluster_limit=%v workers=%d images=%d load_s=%.1f images_per_s=%.0f", hosts, !perWorker, workers, images, secs, float64(images)/secs)
		for _, w := range c.workers {
			w.stop(t)
		}
	}
}

// multiHostTable serves, from cat's first host, a table whose image URLs
// go round-robin to hosts loopback addresses (127.0.0.1 to 127.0.0.N),
// each a listener of cat's handler, each answering after 100 ms.
func multiHostTable(t *testing.T, cat *bigCatalogue, hosts int) string {
	t.Helper()
	urls := []string{cat.srv.URL}
	for k := 2; k <= hosts; k++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", k))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(cat.srv.Config.Handler)
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	var tab bytes.Buffer
	tab.WriteString("id\turl\n")
	for i := range cat.n {
		fmt.Fprintf(&tab, "I%05d\t%s/slow/100/I%05d.png\n", i, urls[i%len(urls)], i)
	}
	b := tab.Bytes()
	mux := http.NewServeMux()
	mux.HandleFunc("/table.tab", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(b) })
	tsrv := httptest.NewServer(mux)
	t.Cleanup(tsrv.Close)
	return tsrv.URL + "/table.tab"
}
