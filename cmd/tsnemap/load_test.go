package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// TestLoad measures the numbers of the service's closing note. It is off
// by default (it loads every core for a while); run it with
//
//	TSNEMAP_LOAD_SECONDS=10 go test -run TestLoad -v ./cmd/tsnemap
func TestLoad(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("TSNEMAP_LOAD_SECONDS"))
	if secs <= 0 {
		t.Skip("set TSNEMAP_LOAD_SECONDS to run the load measurement")
	}
	log := testkit.QuietLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := common{dataDir: t.TempDir(), backend: "cpu", concurrency: 1, maxTimeout: time.Hour, retention: time.Hour,
		maxDeliveries: 3, natsReplicas: 1, ackWait: 30 * time.Second}
	svc, err := startService(ctx, c, "127.0.0.1:0", true, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = svc.wait(ctx) }()
	demo := "http://" + svc.demo.addr.String()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	client := &http.Client{Transport: tr}
	api := testkit.NewAPI(t, svc.url)
	api.Client = client

	// The same job through `tsnemap run` (in process) and through the
	// service: the difference is the service's overhead.
	job := func(method string) string {
		return fmt.Sprintf(`{"dataset_url":"%s/data.tab","image_url_template":"%s/images/{id}.png","method":%q,"dimensions":3,"perplexity":20}`, demo, demo, method)
	}
	for _, method := range []string{"pca", "tsne"} {
		t0 := time.Now()
		var so, se bytes.Buffer
		err := runCommand(ctx, []string{"--dataset-url", demo + "/data.tab", "--image-url-template", demo + "/images/{id}.png",
			"--method", method, "--dimensions", "3", "--perplexity", "20", "--quiet", "-o", t.TempDir() + "/out.tab"},
			func(k string) string {
				if k == "TSNEMAP_ALLOW_PRIVATE_NETWORKS" {
					return "true"
				}
				return ""
			}, &so, &se)
		if err != nil {
			t.Fatalf("run: %v %s", err, se.String())
		}
		direct := time.Since(t0)
		t0 = time.Now()
		id := api.Submit(job(method)).Id
		if j := api.WaitJob(id, 10*time.Minute, testkit.Ended); j.Status != "succeeded" {
			t.Fatalf("job %s %+v", j.Status, j.Error)
		}
		res, err := client.Get(svc.url + "/v1/jobs/" + id + "/result")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		viaService := time.Since(t0)
		t.Logf("%s, 300 demo images, 3-D: tsnemap run %.2fs, service (submit, poll every 10 ms, fetch result) %.2fs, overhead %.2fs",
			method, direct.Seconds(), viaService.Seconds(), (viaService - direct).Seconds())
	}

	// Submit latency. The jobs name a missing table, so the worker ends each
	// at once and the pollers below measure the API and the store alone.
	var lat []time.Duration
	var ids []string
	for i := 0; i < 200; i++ {
		t0 := time.Now() // the bare request: the latency is the service's, not the spec check's
		res, err := client.Post(svc.url+"/v1/jobs", "application/json", strings.NewReader(strings.Replace(job("pca"), "/data.tab", "/missing.tab", 1)))
		lat = append(lat, time.Since(t0))
		var j struct{ ID string }
		if err != nil || res.StatusCode != 202 || json.NewDecoder(res.Body).Decode(&j) != nil {
			t.Fatalf("submit: %v %v", err, res)
		}
		res.Body.Close()
		ids = append(ids, j.ID)
	}
	p50, p99 := percentiles(lat)
	t.Logf("submit: 200 sequential POST /v1/jobs, p50 %v, p99 %v", p50, p99)

	// 200 concurrent pollers of GET /v1/jobs/{id}.
	const pollers = 200
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	for p := 0; p < pollers; p++ {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			url := svc.url + "/v1/jobs/" + ids[p%len(ids)]
			for time.Now().Before(deadline) {
				t0 := time.Now()
				res, err := client.Get(url)
				if err != nil {
					bad++
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					bad++
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			errs += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	p50, p99 = percentiles(all)
	t.Logf("poll: %d concurrent pollers for %ds: %d requests, %.0f requests/s, p50 %v, p99 %v, %d errors",
		pollers, secs, len(all), float64(len(all))/float64(secs), p50, p99, errs)
}

func getJSON(t *testing.T, c *http.Client, url string, v any) {
	t.Helper()
	res, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100]
}

// TestLoadServeProcess drives one `tsnemap serve` process (with an API key,
// so authentication and the ownership check are in every request) with 200
// clients polling job status and 20 submitting jobs, for
// TSNEMAP_LOAD_SECONDS, and reports throughput, latency, errors (there
// must be none) and the server's resident memory before and after. The
// submitted jobs name a missing table, so each ends at once and the load is
// the API and the store's.
func TestLoadServeProcess(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("TSNEMAP_LOAD_SECONDS"))
	if secs <= 0 {
		t.Skip("set TSNEMAP_LOAD_SECONDS to run the load measurement")
	}
	const key = "load-0123456789abcdef0123"
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("load:"+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := httptest.NewServer(http.NotFoundHandler())
	defer missing.Close()
	addr := freeAddr(t)
	api := "http://" + addr
	srv := startProc(t, "serve", "--addr", addr, "--data-dir", t.TempDir(), "--api-keys-file", keys, "--allow-private-networks",
		"--submit-rate", "0", "--max-active-jobs", "0", "--concurrency", "1", "--log-level", "warn")
	waitHTTP(t, api+"/readyz", 30*time.Second)
	tr := &http.Transport{MaxIdleConnsPerHost: 512}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	body := fmt.Sprintf(`{"dataset_url":"%s/missing.tab","image_url_template":"%s/{id}.png","method":"pca"}`, missing.URL, missing.URL)
	do := func(method, url, body string) (int, error) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, url, rd)
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode, nil
	}
	var ids []string
	for i := 0; i < 200; i++ {
		req, _ := http.NewRequest("POST", api+"/v1/jobs", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var j struct{ ID string }
		_ = json.NewDecoder(res.Body).Decode(&j)
		res.Body.Close()
		ids = append(ids, j.ID)
	}

	type tally struct {
		lat  []time.Duration
		errs int
	}
	run := func(d time.Duration, submitters int) (poll, sub tally) {
		var mu sync.Mutex
		deadline := time.Now().Add(d)
		var wg sync.WaitGroup
		client := func(submit bool, p int) {
			var mine tally
			for time.Now().Before(deadline) {
				t0 := time.Now()
				var code int
				var err error
				if submit {
					code, err = do("POST", api+"/v1/jobs", body)
				} else {
					code, err = do("GET", api+"/v1/jobs/"+ids[p%len(ids)], "")
				}
				mine.lat = append(mine.lat, time.Since(t0))
				if err != nil || (submit && code != 202) || (!submit && code != 200) {
					mine.errs++
					if mine.errs <= 3 {
						t.Logf("error: submit=%v %d %v", submit, code, err)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			to := &poll
			if submit {
				to = &sub
			}
			to.lat = append(to.lat, mine.lat...)
			to.errs += mine.errs
		}
		for p := 0; p < 200; p++ {
			wg.Go(func() { client(false, p) })
		}
		for p := 0; p < submitters; p++ {
			wg.Go(func() { client(true, p) })
		}
		wg.Wait()
		return poll, sub
	}
	warm := min(5*time.Second, time.Duration(secs)*time.Second/4)
	run(warm, 20)
	before := rssKB(t, srv.cmd.Process.Pid)
	poll, sub := run(time.Duration(secs)*time.Second, 20)
	after := rssKB(t, srv.cmd.Process.Pid)
	pp50, pp99 := percentiles(poll.lat)
	sp50, sp99 := percentiles(sub.lat)
	total := len(poll.lat) + len(sub.lat)
	t.Logf("load: 200 pollers + 20 submitters for %ds against one serve (after %v warm-up): %d requests, %.0f requests/s; "+
		"poll %d (%.0f/s) p50 %v p99 %v; submit %d (%.0f/s) p50 %v p99 %v; errors %d; server RSS %d MB before, %d MB after",
		secs, warm, total, float64(total)/float64(secs), len(poll.lat), float64(len(poll.lat))/float64(secs),
		pp50.Round(10*time.Microsecond), pp99.Round(10*time.Microsecond), len(sub.lat), float64(len(sub.lat))/float64(secs),
		sp50.Round(10*time.Microsecond), sp99.Round(10*time.Microsecond), poll.errs+sub.errs, before/1024, after/1024)
	errs := poll.errs + sub.errs
	// The store grows with every job submitted (a record, a message, a
	// line in the owner index), so memory under submits grows with them.
	// Leaks show when the work is steady: two equal rounds of polling
	// alone, the second must not need more memory than the first.
	poll1, _ := run(time.Duration(secs)*time.Second, 0)
	mid := rssKB(t, srv.cmd.Process.Pid)
	poll2, _ := run(time.Duration(secs)*time.Second, 0)
	end := rssKB(t, srv.cmd.Process.Pid)
	p50, p99 := percentiles(poll2.lat)
	t.Logf("load: 200 pollers alone, two rounds of %ds: %.0f then %.0f requests/s (p50 %v, p99 %v); server RSS %d MB after the first, %d MB after the second",
		secs, float64(len(poll1.lat))/float64(secs), float64(len(poll2.lat))/float64(secs),
		p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), mid/1024, end/1024)
	errs += poll1.errs + poll2.errs
	if errs != 0 {
		t.Errorf("%d errors under load", errs)
	}
	if end > mid+mid/10+8*1024 {
		t.Errorf("RSS grew from %d to %d MB over a round of polling alone: a leak?", mid/1024, end/1024)
	}
}

// rssKB is the resident memory of a process, from /proc.
func rssKB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// TestLoadJobsThroughTwoWorkers runs TSNEMAP_LOAD_JOBS jobs (default 100)
// of 500 images each through an API-only serve and two worker processes:
// every job must succeed, once, with every image placed.
func TestLoadJobsThroughTwoWorkers(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("TSNEMAP_LOAD_SECONDS"))
	if secs <= 0 {
		t.Skip("set TSNEMAP_LOAD_SECONDS to run the load measurement")
	}
	n := 100
	if v, err := strconv.Atoi(os.Getenv("TSNEMAP_LOAD_JOBS")); err == nil && v > 0 {
		n = v
	}
	cat := newCatalogue(t, 500)
	addr, natsAddr := freeAddr(t), freeAddr(t)
	api := "http://" + addr
	startProc(t, "serve", "--addr", addr, "--data-dir", t.TempDir(), "--nats-listen", natsAddr, "--concurrency", "0",
		"--submit-rate", "0", "--max-active-jobs", "0", "--allow-private-networks")
	waitHTTP(t, api+"/readyz", 30*time.Second)
	var workers []*proc
	for i := 0; i < 2; i++ {
		workers = append(workers, startProc(t, "worker", "--nats-url", "nats://"+natsAddr, "--allow-private-networks", "--threads", "1"))
	}
	body := fmt.Sprintf(`{"dataset_url":"%s/data.tab","image_url_template":"%s/img/{id}.png","image_size":{"width":24,"height":24},"seed":1}`,
		cat.srv.URL, cat.srv.URL)
	t0 := time.Now()
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, postJob(t, api, body))
	}
	for _, id := range ids {
		j := waitJob(t, api, id, 30*time.Minute, func(j jobView) bool { return j.Status != "queued" && j.Status != "running" })
		if j.Status != "succeeded" {
			t.Errorf("job %s: %s %+v", id, j.Status, j.Error)
		}
	}
	took := time.Since(t0)
	ends, per := 0, []int{}
	for _, w := range workers {
		k := strings.Count(w.logText(), `msg="job ended"`)
		ends += k
		per = append(per, k)
	}
	placed := 0
	for _, id := range ids[:min(5, len(ids))] {
		placed += resultRows(t, api, id)
	}
	t.Logf("load: %d jobs × 500 images (t-SNE, 1000 iterations, 24×24 pixels) through 2 workers (1 thread each): %v, %.1f jobs/min; jobs per worker %v; ended %d",
		n, took.Round(time.Second), float64(n)/took.Minutes(), per, ends)
	if ends != n {
		t.Errorf("%d jobs ended in the workers' logs, want %d (each exactly once)", ends, n)
	}
	if want := 501 * min(5, len(ids)); placed != want {
		t.Errorf("first results have %d rows, want %d", placed, want)
	}
}
