package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// Process-level tests of jobs that must be neither failed nor stranded:
// the real binary in separate processes, a real NATS JetStream, loopback.

// TestRollingRestartOfThreeWorkers restarts three worker processes in
// turn (SIGTERM, then a new process) while one long job runs, four times:
// more than --max-deliveries (3). Each stop hands the job back, which is
// no crash, so the job is not failed: it ends succeeded on its fifth
// attempt with its whole result.
func TestRollingRestartOfThreeWorkers(t *testing.T) {
	cat := newGatedCatalogue(t)
	emb := startSharedNATS(t, t.TempDir(), "127.0.0.1:0")
	t.Cleanup(emb.Shutdown)
	common := []string{"--nats-url", emb.ClientURL(), "--allow-private-networks", "--threads", "1"}
	addr := freeAddr(t)
	api := "http://" + addr
	startProc(t, append([]string{"serve", "--addr", addr, "--concurrency", "0"}, common...)...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	var workers [3]*proc
	startWorkerProc := func(k int) {
		workers[k] = startProc(t, append([]string{"worker"}, common...)...)
		waitLog(t, workers[k], "worker started", 30*time.Second)
	}
	for k := range workers {
		startWorkerProc(k)
	}
	id := postJob(t, api, cat.request(true)) // held in loading_images until the gate opens
	started := `msg="job started" job=` + id
	for restart := range 4 {
		holder := -1
		testkit.Eventually(t, 30*time.Second, func() (bool, string) {
			for k, w := range workers {
				if strings.Count(w.logText(), started) > 0 {
					holder = k
					return true, ""
				}
			}
			return false, fmt.Sprintf("no worker started the job (restart %d)", restart)
		})
		workers[holder].stop(t)
		if !strings.Contains(workers[holder].logText(), "job handed back") {
			t.Fatalf("restart %d: the stopped worker did not hand the job back", restart)
		}
		startWorkerProc(holder)
	}
	testkit.Eventually(t, 30*time.Second, func() (bool, string) {
		j := getJob(t, api, id)
		return j.Status == "running" && j.Attempts == 5, fmt.Sprintf("job %s, attempt %d", j.Status, j.Attempts)
	})
	cat.open()
	j := waitJob(t, api, id, 60*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
	if j.Status != "succeeded" || j.Attempts != 5 || j.count("handed_back") != 4 || j.count("finished") != 1 {
		t.Fatalf("after four restarts: %s, attempts %d, %+v, history %+v", j.Status, j.Attempts, j.Error, j.History)
	}
	if n := resultRows(t, api, id); n != 13 {
		t.Errorf("result has %d rows, want 13", n)
	}
}

// TestStoreFullWithWorkerRunning fills the store of a `serve` (no worker
// of its own, NATS open to workers), then starts a worker process. The
// worker is handed the accepted jobs again and again and cannot start them
// (the start write is refused), more times than --max-deliveries. After a
// restart with room, every accepted job runs and succeeds: deliveries
// that started nothing are not attempts.
func TestStoreFullWithWorkerRunning(t *testing.T) {
	cat := newGatedCatalogue(t)
	dir, addr, natsAddr := t.TempDir(), freeAddr(t), freeAddr(t)
	api := "http://" + addr
	base := []string{"serve", "--data-dir", dir, "--addr", addr, "--allow-private-networks", "--submit-rate", "0", "--max-active-jobs", "0"}
	first := startProc(t, append(base, "--concurrency", "0", "--max-store", "131072", "--nats-listen", natsAddr)...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	var accepted []string
	for full := false; !full; {
		res, err := http.Post(api+"/v1/jobs", "application/json", strings.NewReader(cat.request(false)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		switch {
		case res.StatusCode == 202:
			var j struct{ ID string }
			_ = json.Unmarshal(b, &j)
			accepted = append(accepted, j.ID)
		case res.StatusCode == 503 && strings.Contains(string(b), "store-full"):
			full = true
		default:
			t.Fatalf("submit: %d %s", res.StatusCode, b)
		}
		if len(accepted) > 2000 {
			t.Fatal("the store never filled")
		}
	}
	worker := startProc(t, "worker", "--nats-url", "nats://"+natsAddr, "--allow-private-networks", "--threads", "1")
	// Every job handed to the worker, and refused, more than 3 times.
	testkit.Eventually(t, 90*time.Second, func() (bool, string) {
		n := strings.Count(worker.logText(), `msg="start job"`)
		return n >= 5*len(accepted), fmt.Sprintf("%d refused starts of %d jobs", n, len(accepted))
	})
	t.Logf("%d jobs accepted; %d refused starts while full", len(accepted), strings.Count(worker.logText(), `msg="start job"`))
	worker.stop(t)
	first.stop(t)
	startProc(t, append(base, "--concurrency", "2", "--max-store", "67108864")...)
	waitHTTP(t, api+"/readyz", 30*time.Second)
	for _, id := range accepted {
		j := waitJob(t, api, id, 120*time.Second, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
		if j.Status != "succeeded" || j.Attempts != 1 {
			t.Fatalf("job %s: %s after %d attempts %+v", id, j.Status, j.Attempts, j.Error)
		}
	}
}
