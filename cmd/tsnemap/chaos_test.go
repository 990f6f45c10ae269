package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
)

// Faults beyond a clean kill: a worker that hangs, the NATS server of an
// external deployment restarting, a full store. Each test runs the real
// binary in separate processes on loopback and polls with deadlines.

// waitLog waits until p's log contains s.
func waitLog(t *testing.T, p *proc, s string, within time.Duration) {
	t.Helper()
	testkit.Eventually(t, within, func() (bool, string) {
		return strings.Contains(p.logText(), s), "not in the log"
	}, "%q in the log", s)
}

func startSharedNATS(t *testing.T, dir, listen string) *jobs.Embedded {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	emb, err := jobs.StartEmbedded(ctx, jobs.EmbeddedConfig{DataDir: dir, Listen: listen})
	if err != nil {
		t.Fatal(err)
	}
	return emb
}

// TestHungWorkerLosesItsJob stops a worker (SIGSTOP: no in-progress acks,
// no writes) while it holds a job. After the ack wait the other worker takes
// the job and finishes it; when the stopped worker wakes (SIGCONT) it finds
// the job started again elsewhere and writes nothing: the record, its
// history and the result are the second attempt's.
func TestHungWorkerLosesItsJob(t *testing.T) {
	cat := newGatedCatalogue(t)
	emb := startSharedNATS(t, t.TempDir(), "127.0.0.1:0")
	t.Cleanup(emb.Shutdown)
	common := []string{"--nats-url", emb.ClientURL(), "--ack-wait", "2s", "--allow-private-networks"}
	addr := freeAddr(t)
	api := "http://" + addr
	startProc(t, append([]string{"serve", "--addr", addr, "--concurrency", "0"}, common...)...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	w1 := startProc(t, append([]string{"worker"}, common...)...)
	w2 := startProc(t, append([]string{"worker"}, common...)...)
	waitLog(t, w1, "worker started", 30*time.Second)
	waitLog(t, w2, "worker started", 30*time.Second)

	id := postJob(t, api, cat.request(true))
	started := `msg="job started" job=` + id
	var holder, other *proc
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		switch {
		case strings.Contains(w1.logText(), started):
			holder, other = w1, w2
		case strings.Contains(w2.logText(), started):
			holder, other = w2, w1
		}
		return holder != nil, "neither worker's log says so"
	}, "the job started")
	if err := holder.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.cmd.Process.Signal(syscall.SIGCONT) })
	// Silent past the ack wait: JetStream hands the job to the other.
	waitLog(t, other, started, 30*time.Second)
	cat.open()
	j := waitJob(t, api, id, 60*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
	if j.Status != "succeeded" || j.Attempts != 2 {
		t.Fatalf("job %s after attempt %d: %+v", j.Status, j.Attempts, j.Error)
	}
	// Wake the hung worker: it must see it lost the job and write nothing.
	if err := holder.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitLog(t, holder, "job lost to another worker", 30*time.Second)
	if strings.Contains(holder.logText(), `msg="job ended"`) {
		t.Error("the hung worker recorded an outcome after waking")
	}
	j = getJob(t, api, id)
	if j.Status != "succeeded" || j.Attempts != 2 || j.count("finished") != 1 || j.count("retried") != 1 {
		t.Errorf("after the hung worker woke: %s, attempts %d, history %+v", j.Status, j.Attempts, j.History)
	}
	if n := resultRows(t, api, id); n != 13 {
		t.Errorf("result has %d rows", n)
	}
}

// TestNATSRestartUnderExternalDeployment restarts the shared NATS server
// (same store, same port) while jobs are queued and one runs: the API node
// and the worker reconnect, and every job finishes once.
func TestNATSRestartUnderExternalDeployment(t *testing.T) {
	cat := newGatedCatalogue(t)
	natsDir, natsAddr := t.TempDir(), freeAddr(t)
	emb := startSharedNATS(t, natsDir, natsAddr)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			emb.Shutdown()
		}
	})
	common := []string{"--nats-url", "nats://" + natsAddr, "--ack-wait", "2s", "--allow-private-networks"}
	addr := freeAddr(t)
	api := "http://" + addr
	startProc(t, append([]string{"serve", "--addr", addr, "--concurrency", "0"}, common...)...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	w := startProc(t, append([]string{"worker"}, common...)...)
	waitLog(t, w, "worker started", 30*time.Second)

	running := postJob(t, api, cat.request(true))
	waitJob(t, api, running, 30*time.Second, func(j jobView) bool { return j.Stage == "loading_images" })
	var queued []string
	for i := 0; i < 3; i++ {
		queued = append(queued, postJob(t, api, cat.request(false)))
	}

	emb.Shutdown()
	stopped = true
	// While NATS is down the API says so.
	testkit.Eventually(t, 20*time.Second, func() (bool, string) {
		res, err := http.Get(api + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == 503, res.Status
	}, "/readyz reports NATS down")

	emb = startSharedNATS(t, natsDir, natsAddr)
	stopped = false
	waitHTTP(t, api+"/readyz", 30*time.Second)
	cat.open()
	after := postJob(t, api, cat.request(false))
	for _, id := range append(append([]string{running}, queued...), after) {
		j := waitJob(t, api, id, 90*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
		if j.Status != "succeeded" || j.count("finished") != 1 {
			t.Errorf("job %s: %s %+v, history %+v", id, j.Status, j.Error, j.History)
			continue
		}
		if n := resultRows(t, api, id); n != 13 {
			t.Errorf("job %s result has %d rows", id, n)
		}
	}
	if n := strings.Count(w.logText(), `msg="job ended"`); n != 5 {
		t.Errorf("%d jobs ended in the worker's log, want 5", n)
	}
}

// TestStoreFullThenSpaceReturns fills the store of `serve` and restarts it
// with room. The disk cannot be filled (or made read-only to root) without
// privileges, so JetStream's own storage limit stands in for the disk:
// --max-store. Submits past it answer 503 store-full; every job accepted
// before is kept, nothing refused is, and after the restart with room (as
// after an operator frees the disk) every job runs and new ones are taken.
func TestStoreFullThenSpaceReturns(t *testing.T) {
	cat := newGatedCatalogue(t)
	dir, addr := t.TempDir(), freeAddr(t)
	api := "http://" + addr
	base := []string{"serve", "--data-dir", dir, "--addr", addr, "--allow-private-networks", "--submit-rate", "0", "--max-active-jobs", "0"}
	// No worker at first: jobs stay queued, so only submits use space.
	first := startProc(t, append(base, "--concurrency", "0", "--max-store", "131072")...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	var accepted []string
	var problem string
	for i := 0; i < 2000 && problem == ""; i++ {
		res, err := http.Post(api+"/v1/jobs", "application/json", strings.NewReader(cat.request(false)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		switch res.StatusCode {
		case 202:
			var j struct{ ID string }
			_ = json.Unmarshal(b, &j)
			accepted = append(accepted, j.ID)
		case 503:
			problem = string(b)
		default:
			t.Fatalf("submit: %d %s", res.StatusCode, b)
		}
	}
	if !strings.Contains(problem, "store-full") {
		t.Fatalf("after %d jobs, no store-full answer: %q", len(accepted), problem)
	}
	t.Logf("store full after %d jobs", len(accepted))
	first.stop(t)

	startProc(t, append(base, "--concurrency", "2", "--max-store", "67108864")...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	var list struct{ Jobs []struct{ ID string } }
	res, err := http.Get(api + "/v1/jobs?limit=100")
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(res.Body).Decode(&list)
	res.Body.Close()
	if len(list.Jobs) != min(len(accepted), 100) {
		t.Errorf("after the restart the store lists %d jobs, %d were accepted", len(list.Jobs), len(accepted))
	}
	accepted = append(accepted, postJob(t, api, cat.request(false)))
	for _, id := range accepted {
		j := waitJob(t, api, id, 120*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
		if j.Status != "succeeded" {
			t.Fatalf("job %s: %s %+v", id, j.Status, j.Error)
		}
	}
}

// TestServeRefusesToListenOpenly: without keys a non-loopback --addr stops
// serve at start-up with a usage error naming both ways out (keys, or
// --insecure-listen-any), rather than listening somewhere else; with
// --insecure-listen-any, or with keys (here from the environment), --addr
// is used as given.
func TestServeRefusesToListenOpenly(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("ci:0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		refused bool
		warn    string
	}{
		{"no keys", nil, nil, true, ""},
		{"no keys, insecure", nil, []string{"--insecure-listen-any"}, false, "--insecure-listen-any: anyone"},
		{"keys", map[string]string{"TSNEMAP_API_KEYS_FILE": keys}, nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newServeFlags(t, tc.args, tc.env)
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			ctx, cancel := context.WithCancel(context.Background())
			svc, err := startService(ctx, fs, "0.0.0.0:0", false, log)
			if tc.refused {
				cancel()
				if err == nil {
					_ = svc.wait(ctx)
					t.Fatalf("listened on %s without keys", svc.url)
				}
				for _, want := range []string{"--api-keys-file", "TSNEMAP_API_KEYS_FILE", "--insecure-listen-any", "0.0.0.0:0"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("refusal does not name %s: %v", want, err)
					}
				}
				if !errors.Is(err, errUsage) {
					t.Errorf("refusal is not a usage error (exit 2): %v", err)
				}
				return
			}
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			defer func() { cancel(); _ = svc.wait(ctx) }()
			if host, _, _ := net.SplitHostPort(strings.TrimPrefix(svc.url, "http://")); host == "127.0.0.1" {
				t.Errorf("listens on %s, not on every address", svc.url)
			}
			if tc.warn != "" && !strings.Contains(logs.String(), tc.warn) {
				t.Errorf("no warning %q in %s", tc.warn, logs.String())
			}
			res, err := http.Get(strings.Replace(strings.Replace(svc.url, "0.0.0.0", "127.0.0.1", 1), "[::]", "127.0.0.1", 1) + "/v1/jobs")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if want := map[bool]int{true: 401, false: 200}[tc.env != nil]; res.StatusCode != want {
				t.Errorf("GET /v1/jobs without a key: %d, want %d", res.StatusCode, want)
			}
		})
	}
}

// newServeFlags parses serve's flags as the command does.
func newServeFlags(t *testing.T, args []string, env map[string]string) common {
	t.Helper()
	fs := flag.NewFlagSet("tsnemap serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c common
	c.register(fs, false)
	args = append([]string{"--data-dir", t.TempDir(), "--concurrency", "0"}, args...)
	if err := parseWithEnv(fs, args, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKillWorkerMidOptimisation kills (SIGKILL) the worker running a job
// while it optimises: the job is redelivered to the other worker and
// finishes there, once; its history says it was retried.
func TestKillWorkerMidOptimisation(t *testing.T) {
	cat := newCatalogue(t, 200)
	emb := startSharedNATS(t, t.TempDir(), "127.0.0.1:0")
	t.Cleanup(emb.Shutdown)
	common := []string{"--nats-url", emb.ClientURL(), "--ack-wait", "2s", "--allow-private-networks", "--threads", "1"}
	addr := freeAddr(t)
	api := "http://" + addr
	startProc(t, append([]string{"serve", "--addr", addr, "--concurrency", "0"}, common...)...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	w1 := startProc(t, append([]string{"worker"}, common...)...)
	w2 := startProc(t, append([]string{"worker"}, common...)...)
	waitLog(t, w1, "worker started", 30*time.Second)
	waitLog(t, w2, "worker started", 30*time.Second)

	id := postJob(t, api, fmt.Sprintf(`{"dataset_url":"%s/data.tab","image_url_template":"%s/img/{id}.png","image_size":{"width":8,"height":8},"iterations":10000,"seed":1}`,
		cat.srv.URL, cat.srv.URL))
	waitJob(t, api, id, 60*time.Second, func(j jobView) bool { return j.Stage == "optimizing" })
	started := `msg="job started" job=` + id
	holder, other := w1, w2
	if !strings.Contains(w1.logText(), started) {
		holder, other = w2, w1
	}
	if err := holder.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = holder.cmd.Wait()
	j := waitJob(t, api, id, 120*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
	if j.Status != "succeeded" || j.Attempts != 2 || j.count("retried") != 1 || j.count("finished") != 1 {
		t.Fatalf("after the kill: %s, attempts %d, %+v, history %+v", j.Status, j.Attempts, j.Error, j.History)
	}
	if n := strings.Count(other.logText(), `msg="job ended"`); n != 1 || strings.Contains(holder.logText(), `msg="job ended"`) {
		t.Errorf("job ended %d times on the survivor (and on the killed worker: %v)", n, strings.Contains(holder.logText(), `msg="job ended"`))
	}
	if n := resultRows(t, api, id); n != 201 {
		t.Errorf("result has %d rows, want 201", n)
	}
}

// TestMaxImagesFailsALongerTable: with --max-images 5, a 13-row table
// fails its job as dataset_invalid naming the cap, and limit 5 maps it.
func TestMaxImagesFailsALongerTable(t *testing.T) {
	cat := newCatalogue(t, 12)
	c := newServeFlags(t, []string{"--max-images", "5", "--concurrency", "1", "--allow-private-networks", "--submit-rate", "0"}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := startService(ctx, c, "127.0.0.1:0", false, testkit.QuietLogger())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	defer func() { cancel(); _ = svc.wait(ctx) }()
	base := fmt.Sprintf(`{"dataset_url":"%s/data.tab","image_url_template":"%s/img/{id}.png","method":"pca","image_size":{"width":8,"height":8}`, cat.srv.URL, cat.srv.URL)
	long := postJob(t, svc.url, base+`}`)
	j := waitJob(t, svc.url, long, 30*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
	if j.Status != "failed" || j.Error == nil || j.Error.Code != "dataset_invalid" || !strings.Contains(j.Error.Message, "more than 5 rows") {
		t.Errorf("13 rows past --max-images 5: %s %+v", j.Status, j.Error)
	}
	short := postJob(t, svc.url, base+`,"limit":5}`)
	if j := waitJob(t, svc.url, short, 30*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" }); j.Status != "succeeded" {
		t.Errorf("limit 5: %s %+v", j.Status, j.Error)
	}
}
