package main

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
)

// Process-level tests of one large job loaded by every worker of a
// cluster: one `serve` (API only), three `worker`s and a NATS JetStream on
// loopback, the real binary.

// bigCatalogue serves a table of n ids and an 8×8 PNG for each, made on
// first request. /img/ID.png answers at once; /slow/MS/ID.png after MS
// milliseconds (or when the client gives up). It counts the requests for
// each image, the requests in flight and the most ever in flight.
type bigCatalogue struct {
	srv      *httptest.Server
	n        int
	mu       sync.Mutex
	pngs     map[int][]byte
	requests []atomic.Int32
	inFlight atomic.Int64
	maxSeen  atomic.Int64
}

func newBigCatalogue(t *testing.T, n int) *bigCatalogue {
	c := &bigCatalogue{n: n, pngs: map[int][]byte{}, requests: make([]atomic.Int32, n)}
	var tab bytes.Buffer
	tab.WriteString("id\tgroup\n")
	for i := range n {
		fmt.Fprintf(&tab, "I%05d\t%d\n", i, i%groups)
	}
	table := tab.Bytes()
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/data.tab" {
			_, _ = w.Write(table)
			return
		}
		c.serveImage(w, r)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

var imagePath = regexp.MustCompile(`^/(?:img|slow/(\d+))/I(\d{5})\.png$`)

func (c *bigCatalogue) serveImage(w http.ResponseWriter, r *http.Request) {
	m := imagePath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		http.NotFound(w, r)
		return
	}
	i, _ := strconv.Atoi(m[2])
	if i >= c.n {
		http.NotFound(w, r)
		return
	}
	now := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for seen := c.maxSeen.Load(); now > seen && !c.maxSeen.CompareAndSwap(seen, now); seen = c.maxSeen.Load() {
	}
	c.requests[i].Add(1)
	if m[1] != "" {
		ms, _ := strconv.Atoi(m[1])
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "image/png")
	_, _ = w.Write(c.png(i))
}

// png is image i: a colour of its group with a texture of its own, so no
// two images are equal.
func (c *bigCatalogue) png(i int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.pngs[i]; ok {
		return b
	}
	base := groupColor(i % groups)
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	h := uint32(i)*2654435761 + 1
	for p := range 64 {
		h ^= h << 13
		h ^= h >> 17
		h ^= h << 5
		d := uint8(h % 40)
		img.Set(p%8, p/8, color.RGBA{base.R/2 + d, base.G/2 + d, base.B/2 + d, 255})
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	c.pngs[i] = b.Bytes()
	return b.Bytes()
}

// totalRequests counts the image requests so far.
func (c *bigCatalogue) totalRequests() int {
	n := 0
	for i := range c.requests {
		n += int(c.requests[i].Load())
	}
	return n
}

// testCluster is one API-only `serve` and three `worker`s (w0, w1, w2) on
// a shared NATS, with a short ack wait so a killed worker's shard goes to
// another within seconds.
type testCluster struct {
	api     string
	workers []*proc
	store   *jobs.Store
}

func startTestCluster(t *testing.T, extra ...string) *testCluster {
	t.Helper()
	return startWorkers(t, 3, extra...)
}

// startWorkers is startTestCluster with n workers.
func startWorkers(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	emb := startSharedNATS(t, t.TempDir(), "127.0.0.1:0")
	t.Cleanup(emb.Shutdown)
	common := append([]string{"--nats-url", emb.ClientURL(), "--ack-wait", "2s", "--allow-private-networks", "--threads", "1"}, extra...)
	addr := freeAddr(t)
	c := &testCluster{api: "http://" + addr}
	startProc(t, append([]string{"serve", "--addr", addr, "--concurrency", "0", "--submit-rate", "0"}, common...)...)
	waitHTTP(t, c.api+"/readyz", 30*time.Second)
	for k := range n {
		c.workers = append(c.workers, startProc(t, append([]string{"worker", "--worker-name", fmt.Sprintf("w%d", k)}, common...)...))
	}
	for _, w := range c.workers {
		waitLog(t, w, "worker started", 30*time.Second)
	}
	nc, err := emb.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.store, err = jobs.Open(ctx, nc, jobs.Config{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// shardsLeft counts the shard objects in the store.
func (c *testCluster) shardsLeft(t *testing.T) int {
	n, err := c.store.ShardObjects(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// shardStarts lists the shards of job id that worker w started, in order.
func shardStarts(w *proc, id string) []int {
	re := regexp.MustCompile(`msg="shard started" job=` + id + ` shard=(\d+)`)
	var out []int
	for _, m := range re.FindAllStringSubmatch(w.logText(), -1) {
		k, _ := strconv.Atoi(m[1])
		out = append(out, k)
	}
	return out
}

func resultTable(t *testing.T, api, id string) string {
	t.Helper()
	res, b := testkit.NewAPI(t, api).Do("GET", "/v1/jobs/"+id+"/result", "")
	if res.StatusCode != 200 {
		t.Fatalf("result of %s: %d %s", id, res.StatusCode, b)
	}
	return string(b)
}

func jobEnded(j jobView) bool { return j.Status != "queued" && j.Status != "running" }

// TestClusterLoadsOneJobInShards: a 20,000-image job in shards of 1,000
// is loaded by all three workers (its history says which loaded which
// shard), every image is counted once, and its result equals, to the
// bit, the same job loaded whole by one worker. No shard object is left.
func TestClusterLoadsOneJobInShards(t *testing.T) {
	const n = 20_000
	cat := newBigCatalogue(t, n)
	c := startTestCluster(t)
	body := func(extra string) string {
		return fmt.Sprintf(`{"dataset_url":"%s/data.tab","image_url_template":"%s/img/{id}.png","image_size":{"width":8,"height":8},"iterations":60,"exaggeration_iterations":30,"seed":7%s}`,
			cat.srv.URL, cat.srv.URL, extra)
	}
	sharded := postJob(t, c.api, body(`,"shard_size":1000`))
	j := waitJob(t, c.api, sharded, 300*time.Second, jobEnded)
	if j.Status != "succeeded" {
		t.Fatalf("sharded job %s: %+v %+v", j.Status, j.Error, j.History)
	}
	byWorker := map[string]int{}
	for _, e := range j.History {
		if e.Event == "shard_loaded" {
			_, who, _ := strings.Cut(e.Detail, " by ")
			byWorker[who]++
		}
	}
	if len(byWorker) != 3 || byWorker["w0"]+byWorker["w1"]+byWorker["w2"] != 20 {
		t.Errorf("shards loaded by %v, want all 20 shards spread over w0, w1 and w2", byWorker)
	}
	if api := testkit.NewAPI(t, c.api).Job(sharded); api.Shards == nil || api.Shards.Count != 20 || len(api.Shards.Done) != 20 || api.Shards.Size != 1000 {
		t.Errorf("the job's shards: %+v", api.Shards)
	}
	full := getJobProgress(t, c.api, sharded)
	if full.ImagesLoaded != n || full.ImagesFailed != 0 {
		t.Errorf("progress %+v, want %d images loaded", full, n)
	}
	for i := range cat.requests {
		if r := cat.requests[i].Load(); r != 1 {
			t.Fatalf("image %d requested %d times", i, r)
		}
	}
	whole := postJob(t, c.api, body(""))
	jw := waitJob(t, c.api, whole, 300*time.Second, jobEnded)
	if jw.Status != "succeeded" || jw.count("shard_loaded") != 0 {
		t.Fatalf("whole job %s with %d shards: %+v", jw.Status, jw.count("shard_loaded"), jw.Error)
	}
	if a, b := resultTable(t, c.api, sharded), resultTable(t, c.api, whole); a != b {
		t.Errorf("the sharded result differs from the whole one (%d and %d bytes)", len(a), len(b))
	}
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		n := c.shardsLeft(t)
		return n == 0, fmt.Sprintf("%d shard objects left", n)
	})
}

// progressView is a job's progress as the API shows it.
type progressView struct {
	ImagesTotal  int `json:"images_total"`
	ImagesLoaded int `json:"images_loaded"`
	ImagesFailed int `json:"images_failed"`
}

func getJobProgress(t *testing.T, api, id string) progressView {
	t.Helper()
	j := testkit.NewAPI(t, api).Job(id)
	return progressView{ImagesTotal: j.Progress.ImagesTotal, ImagesLoaded: j.Progress.ImagesLoaded, ImagesFailed: j.Progress.ImagesFailed}
}

// TestClusterSurvivesAWorkerKilledMidShard kills (SIGKILL) a worker while
// it loads a shard of a job it does not run: after the ack wait another
// worker loads that shard, the job succeeds, and every image is counted
// once.
func TestClusterSurvivesAWorkerKilledMidShard(t *testing.T) {
	const n = 3000
	cat := newBigCatalogue(t, n)
	c := startTestCluster(t)
	id := postJob(t, c.api, fmt.Sprintf(`{"dataset_url":"%s/data.tab","image_url_template":"%s/slow/100/{id}.png","image_size":{"width":8,"height":8},"iterations":60,"shard_size":300,"seed":3}`,
		cat.srv.URL, cat.srv.URL))
	var victim *proc
	var shard int
	var name string
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		for k, w := range c.workers {
			if strings.Contains(w.logText(), `msg="job started" job=`+id) {
				continue // the job's own worker: its loss would restart the job
			}
			// Mid-shard: it started more shards of the job than it ended.
			text := w.logText()
			ends := strings.Count(text, `msg="shard loaded" job=`+id) + strings.Count(text, `msg="shard stopped" job=`+id)
			if s := shardStarts(w, id); len(s) > ends {
				victim, shard, name = w, s[len(s)-1], fmt.Sprintf("w%d", k)
				return true, ""
			}
		}
		return false, "no other worker started a shard"
	})
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Wait()
	j := waitJob(t, c.api, id, 180*time.Second, jobEnded)
	if j.Status != "succeeded" || j.Attempts != 1 {
		t.Fatalf("after the kill: %s, attempts %d, %+v, history %+v", j.Status, j.Attempts, j.Error, j.History)
	}
	if p := getJobProgress(t, c.api, id); p.ImagesLoaded != n || p.ImagesFailed != 0 {
		t.Errorf("progress %+v, want each of %d images counted once", p, n)
	}
	if got := j.count("shard_loaded"); got != 10 {
		t.Errorf("%d shards counted, want 10", got)
	}
	prefix := fmt.Sprintf("shard %d (", shard)
	for _, e := range j.History {
		if e.Event == "shard_loaded" && strings.HasPrefix(e.Detail, prefix) && strings.HasSuffix(e.Detail, " by "+name) {
			t.Errorf("shard %d counted as loaded by the killed worker: %s", shard, e.Detail)
		}
	}
	if n := resultRows(t, c.api, id); n != 3000 {
		t.Errorf("result has %d rows, want 3000", n)
	}
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		n := c.shardsLeft(t)
		return n == 0, fmt.Sprintf("%d shard objects left", n)
	})
}

// TestClusterCancelStopsEveryShard cancels a sharded job while all three
// workers load its shards: within 2 s no image request is in flight and
// none starts after, and no shard object is left.
func TestClusterCancelStopsEveryShard(t *testing.T) {
	const n = 6000
	cat := newBigCatalogue(t, n)
	c := startTestCluster(t)
	id := postJob(t, c.api, fmt.Sprintf(`{"dataset_url":"%s/data.tab","image_url_template":"%s/slow/2000/{id}.png","image_size":{"width":8,"height":8},"shard_size":500}`,
		cat.srv.URL, cat.srv.URL))
	testkit.Eventually(t, 60*time.Second, func() (bool, string) {
		busy := 0
		for _, w := range c.workers {
			if len(shardStarts(w, id)) > 0 {
				busy++
			}
		}
		return busy == 3 && cat.inFlight.Load() >= 3, fmt.Sprintf("%d workers loading shards, %d requests in flight", busy, cat.inFlight.Load())
	})
	t.Logf("cancelling with %d image requests in flight", cat.inFlight.Load())
	cancelled := time.Now()
	res, b := testkit.NewAPI(t, c.api).Do("DELETE", "/v1/jobs/"+id, "")
	if res.StatusCode >= 300 {
		t.Fatalf("cancel: %d %s", res.StatusCode, b)
	}
	testkit.Eventually(t, 2*time.Second, func() (bool, string) {
		n := cat.inFlight.Load()
		return n == 0, fmt.Sprintf("%d image requests still in flight", n)
	})
	t.Logf("no request in flight %v after the cancel", time.Since(cancelled).Round(time.Millisecond))
	after := cat.totalRequests()
	j := waitJob(t, c.api, id, 10*time.Second, jobEnded)
	if j.Status != "canceled" {
		t.Fatalf("job %s after cancel", j.Status)
	}
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		n := c.shardsLeft(t)
		return n == 0, fmt.Sprintf("%d shard objects left", n)
	})
	if got := cat.totalRequests(); got != after {
		t.Errorf("%d image requests after the cancel had stopped them", got-after)
	}
	for k, w := range c.workers {
		if !strings.Contains(w.logText(), `msg="shard stopped" job=`+id) && !strings.Contains(w.logText(), `msg="job ended" job=`+id) {
			t.Errorf("worker w%d logged no stop of its shard", k)
		}
	}
}

// TestClusterHostLimit: three workers with --max-per-host 8 load one
// job's shards from one host together; the host never sees more than 8
// requests at once (each worker alone would allow 8, 24 in all).
func TestClusterHostLimit(t *testing.T) {
	const n = 1200
	cat := newBigCatalogue(t, n)
	c := startTestCluster(t, "--max-per-host", "8")
	id := postJob(t, c.api, fmt.Sprintf(`{"dataset_url":"%s/data.tab","image_url_template":"%s/slow/50/{id}.png","image_size":{"width":8,"height":8},"iterations":60,"shard_size":100}`,
		cat.srv.URL, cat.srv.URL))
	j := waitJob(t, c.api, id, 120*time.Second, jobEnded)
	if j.Status != "succeeded" {
		t.Fatalf("job %s: %+v", j.Status, j.Error)
	}
	loaders := map[string]bool{}
	for _, e := range j.History {
		if e.Event == "shard_loaded" {
			_, who, _ := strings.Cut(e.Detail, " by ")
			loaders[who] = true
		}
	}
	if len(loaders) < 2 {
		t.Errorf("shards loaded by %v only: the limit was not shared", loaders)
	}
	if m := cat.maxSeen.Load(); m > 8 || m < 4 {
		t.Errorf("the host saw up to %d requests at once, want at most 8 (and the limit used)", m)
	}
	t.Logf("at most %d requests at once, shards loaded by %v", cat.maxSeen.Load(), loaders)
}
