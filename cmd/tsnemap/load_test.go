package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
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
		id := submit(t, client, svc.url, job(method))
		for {
			var j struct{ Status string }
			getJSON(t, client, svc.url+"/v1/jobs/"+id, &j)
			if j.Status == "succeeded" {
				break
			}
			if j.Status == "failed" || j.Status == "canceled" {
				t.Fatalf("job %s", j.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
		res, err := client.Get(svc.url + "/v1/jobs/" + id + "/result")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		viaService := time.Since(t0)
		t.Logf("%s, 300 demo images, 3-D: tsnemap run %.2fs, service (submit, poll every 20 ms, fetch result) %.2fs, overhead %.2fs",
			method, direct.Seconds(), viaService.Seconds(), (viaService - direct).Seconds())
	}

	// Submit latency. The jobs name a missing table, so the worker ends each
	// at once and the pollers below measure the API and the store alone.
	var lat []time.Duration
	var ids []string
	for i := 0; i < 200; i++ {
		t0 := time.Now()
		ids = append(ids, submit(t, client, svc.url, strings.Replace(job("pca"), "/data.tab", "/missing.tab", 1)))
		lat = append(lat, time.Since(t0))
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

func submit(t *testing.T, c *http.Client, api, body string) string {
	t.Helper()
	res, err := c.Post(api+"/v1/jobs", "application/json", bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var j struct{ ID string }
	if err := json.NewDecoder(res.Body).Decode(&j); err != nil || res.StatusCode != 202 {
		t.Fatalf("submit: %d %v", res.StatusCode, err)
	}
	return j.ID
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
