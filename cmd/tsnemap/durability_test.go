package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
)

// These tests run the real binary in separate processes, kill and restart
// them, and check that no job is lost or run to two results.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func tsnemapBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tsnemap-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tsnemap")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a tsnemap process whose log is kept in memory.
type proc struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	log bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.Write(b)
}

func (p *proc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{}
	p.cmd = exec.Command(tsnemapBinary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("log of %v:\n%s", args, p.logText())
		}
	})
	return p
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit within 20 s of SIGTERM")
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string, within time.Duration) {
	t.Helper()
	testkit.Eventually(t, within, func() (bool, string) {
		res, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == 200, res.Status
	}, "%s ready", url)
}

// gatedCatalogue serves the test catalogue, except that images under
// /gated/ are held until open is called.
type gatedCatalogue struct {
	*catalogue
	gate chan struct{}
	once sync.Once
	srv  *http.Server
	url  string
}

func newGatedCatalogue(t *testing.T) *gatedCatalogue {
	g := &gatedCatalogue{catalogue: newCatalogue(t, 12), gate: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/gated/"); ok {
			select {
			case <-g.gate:
			case <-r.Context().Done():
				return
			}
			r.URL.Path = "/img/" + rest
		}
		res, err := http.Get(g.catalogue.srv.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer res.Body.Close()
		w.WriteHeader(res.StatusCode)
		b := new(bytes.Buffer)
		_, _ = b.ReadFrom(res.Body)
		_, _ = w.Write(b.Bytes())
	})}
	go func() { _ = g.srv.Serve(ln) }()
	t.Cleanup(func() { g.open(); _ = g.srv.Close() })
	g.url = "http://" + ln.Addr().String()
	return g
}

func (g *gatedCatalogue) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gatedCatalogue) request(gated bool) string {
	dir := "img"
	if gated {
		dir = "gated"
	}
	return fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"method":"pca","image_size":{"width":8,"height":8}}`,
		g.url+"/data.tab", g.url+"/"+dir+"/{id}.png")
}

func postJob(t *testing.T, api, body string) string {
	t.Helper()
	return testkit.NewAPI(t, api).Submit(body).Id
}

type jobView struct {
	Status   string
	Stage    string
	Error    *struct{ Code, Message string }
	Attempts int
	History  []struct {
		Event   string
		Attempt int
		Detail  string
	}
}

// count is how many entries of the job's history are event.
func (j jobView) count(event string) int {
	n := 0
	for _, e := range j.History {
		if e.Event == event {
			n++
		}
	}
	return n
}

// getJob reads a job with its bookkeeping (attempts and history).
func getJob(t *testing.T, api, id string) jobView {
	t.Helper()
	res, b := testkit.NewAPI(t, api).Do("GET", "/v1/jobs/"+id, "")
	var j jobView
	if res.StatusCode != 200 || json.Unmarshal(b, &j) != nil {
		t.Fatalf("get %s: %d %s", id, res.StatusCode, b)
	}
	return j
}

func waitJob(t *testing.T, api, id string, within time.Duration, ok func(jobView) bool) jobView {
	t.Helper()
	var j jobView
	testkit.Eventually(t, within, func() (bool, string) {
		j = getJob(t, api, id)
		return ok(j), fmt.Sprintf("%s/%s (%+v)", j.Status, j.Stage, j.Error)
	}, "job %s", id)
	return j
}

func resultRows(t *testing.T, api, id string) int {
	t.Helper()
	res, err := http.Get(api + "/v1/jobs/" + id + "/result")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b := new(bytes.Buffer)
	_, _ = b.ReadFrom(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("result of %s: %d %s", id, res.StatusCode, b)
	}
	return strings.Count(b.String(), "\n") - 1
}

func TestRestartKeepsQueuedAndRunningJobs(t *testing.T) {
	cat := newGatedCatalogue(t)
	dir, addr := t.TempDir(), freeAddr(t)
	api := "http://" + addr
	args := []string{"serve", "--data-dir", dir, "--addr", addr, "--allow-private-networks", "--concurrency", "1"}
	first := startProc(t, args...)
	waitHTTP(t, api+"/readyz", 30*time.Second)

	running := postJob(t, api, cat.request(true))
	waitJob(t, api, running, 30*time.Second, func(j jobView) bool { return j.Stage == "loading_images" })
	// Posted once the first runs: a worker may take a job whose record is
	// not yet readable later than the next one, so two jobs posted
	// together need not start in order.
	queued := postJob(t, api, cat.request(false))
	if j := getJob(t, api, queued); j.Status != "queued" {
		t.Fatalf("second job is %s, want queued behind the first", j.Status)
	}
	first.stop(t)
	if !strings.Contains(first.logText(), "job handed back") {
		t.Errorf("the running job was not handed back on SIGTERM")
	}

	startProc(t, args...) // same data dir: a new process finds both jobs
	waitHTTP(t, api+"/readyz", 30*time.Second)
	cat.open()
	for _, id := range []string{running, queued} {
		j := waitJob(t, api, id, 60*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
		if j.Status != "succeeded" {
			t.Fatalf("job %s: %s %+v", id, j.Status, j.Error)
		}
		if n := resultRows(t, api, id); n != 13 {
			t.Errorf("job %s result has %d rows, want 13", id, n)
		}
	}
}

func TestTwoWorkersShareJobsAndSurviveKill(t *testing.T) {
	cat := newGatedCatalogue(t)
	ctx := context.Background()
	// The shared NATS, standing in for a cluster: a server with a client
	// port, run by the test.
	emb, err := jobs.StartEmbedded(ctx, jobs.EmbeddedConfig{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	natsURL := emb.ClientURL()
	common := []string{"--nats-url", natsURL, "--ack-wait", "2s", "--allow-private-networks"}
	addr := freeAddr(t)
	api := "http://" + addr
	// An API-only node on the shared NATS, and two workers.
	serve := startProc(t, append([]string{"serve", "--addr", addr, "--concurrency", "0"}, common...)...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	w1 := startProc(t, append([]string{"worker"}, common...)...)
	w2 := startProc(t, append([]string{"worker"}, common...)...)
	workers := []*proc{w1, w2}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, func() (bool, string) { return ok(), "not yet" }, what)
	}
	waitFor("workers to start", func() bool {
		return strings.Contains(w1.logText(), "worker started") && strings.Contains(w2.logText(), "worker started")
	})

	gated := postJob(t, api, cat.request(true))
	var holder *proc
	waitFor("the gated job to start", func() bool {
		for _, w := range workers {
			if strings.Contains(w.logText(), `msg="job started" job=`+gated) {
				holder = w
				return true
			}
		}
		return false
	})
	var ids []string
	for i := 0; i < 9; i++ {
		ids = append(ids, postJob(t, api, cat.request(false)))
	}
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = holder.cmd.Wait()
	cat.open()
	for _, id := range append(ids, gated) {
		j := waitJob(t, api, id, 90*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
		if j.Status != "succeeded" {
			t.Errorf("job %s: %s %+v", id, j.Status, j.Error)
			continue
		}
		if n := resultRows(t, api, id); n != 13 {
			t.Errorf("job %s result has %d rows", id, n)
		}
	}
	// The killed worker's job was redelivered, and its history says so:
	// two starts, one retry, one end.
	if j := getJob(t, api, gated); j.Attempts != 2 || j.count("retried") != 1 || j.count("started") != 2 || j.count("finished") != 1 {
		t.Errorf("history of the job whose worker was killed: attempts %d, %+v", j.Attempts, j.History)
	}
	// Every job ran to completion exactly once.
	ends := 0
	ran := map[*proc]int{}
	if strings.Contains(serve.logText(), `msg="job started"`) {
		t.Error("the API-only node ran a job")
	}
	for _, w := range workers {
		log := w.logText()
		ends += strings.Count(log, `msg="job ended"`)
		ran[w] = strings.Count(log, `msg="job started"`)
	}
	if ends != 10 {
		t.Errorf("%d jobs ended in the logs, want exactly 10", ends)
	}
	t.Logf("job starts: killed worker %d, survivor %d; %d ended", ran[holder], ran[w1]+ran[w2]-ran[holder], ends)
	busy := 0
	for _, n := range ran {
		if n > 0 {
			busy++
		}
	}
	if busy < 2 {
		t.Errorf("jobs were not shared: starts per process %v", ran)
	}
}

func TestRestartAfterKillRunsTheJobAgain(t *testing.T) {
	cat := newGatedCatalogue(t)
	dir, addr := t.TempDir(), freeAddr(t)
	api := "http://" + addr
	args := []string{"serve", "--data-dir", dir, "--addr", addr, "--allow-private-networks", "--ack-wait", "2s"}
	first := startProc(t, args...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	id := postJob(t, api, cat.request(true))
	waitJob(t, api, id, 30*time.Second, func(j jobView) bool { return j.Stage == "loading_images" })
	// No goodbye: the process and its embedded NATS die mid-job.
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()

	second := startProc(t, args...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	cat.open()
	j := waitJob(t, api, id, 60*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
	if j.Status != "succeeded" {
		t.Fatalf("job %s %+v", j.Status, j.Error)
	}
	if n := resultRows(t, api, id); n != 13 {
		t.Errorf("result has %d rows", n)
	}
	if !strings.Contains(second.logText(), "attempt=2") {
		t.Errorf("the restarted server did not run the job as its second attempt")
	}
}
