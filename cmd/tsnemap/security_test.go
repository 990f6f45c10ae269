package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMillionRowCatalogueAt512FailsAndServerServes: a 6.9 MB table of
// 1,000,000 ids at 512×512 asks for ~790 GB. Before, the allocation
// aborted the process (API, worker and NATS together, and the redelivered
// job did it again). Now the job fails once, as dataset_invalid, with a
// message naming the numbers, and the server goes on serving: the next
// job succeeds.
func TestMillionRowCatalogueAt512FailsAndServerServes(t *testing.T) {
	var tab bytes.Buffer
	tab.WriteString("id\n")
	for i := range 1_000_000 {
		tab.WriteString(strconv.Itoa(i))
		tab.WriteByte('\n')
	}
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(tab.Bytes()) }))
	t.Cleanup(big.Close)
	cat := newCatalogue(t, 12)
	e := startE2E(t, true)
	id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"image_size":{"width":512,"height":512}}`,
		big.URL+"/million.tab", big.URL+"/img/{id}.png"))
	j := e.wait(id, 2*time.Minute, ended)
	if j.Status != "failed" || j.Error == nil || j.Error.Code != "dataset_invalid" {
		t.Fatalf("job: %s %+v", j.Status, j.Error)
	}
	for _, want := range []string{"1000000 rows of 512×512", "GB of memory", "memory budget", "set limit"} {
		if !strings.Contains(j.Error.Message, want) {
			t.Errorf("message does not say %q: %s", want, j.Error.Message)
		}
	}
	if j.Attempts != nil && *j.Attempts != 1 {
		t.Errorf("attempts = %d: the job was run again", *j.Attempts)
	}
	t.Log(j.Error.Message)
	if code, b := e.do("GET", "/healthz", ""); code != 200 {
		t.Fatalf("healthz after: %d %s", code, b)
	}
	next := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"perplexity":3}`, cat.srv.URL+"/data.tab", cat.srv.URL+"/img/{id}.png"))
	if j := e.wait(next, 2*time.Minute, ended); j.Status != "succeeded" {
		raw, _ := json.Marshal(j)
		t.Errorf("the next job: %s", raw)
	}
}

// TestHTTPServerTimeouts: idle keep-alive connections and slow request
// bodies are not held for ever (before, only the header had a deadline).
func TestHTTPServerTimeouts(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := common{dataDir: t.TempDir(), backend: "cpu", threads: 1, concurrency: 0, maxTimeout: time.Hour,
		retention: time.Hour, maxDeliveries: 3, natsReplicas: 1}
	svc, err := startService(ctx, c, "127.0.0.1:0", false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
	hs := svc.hs
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.IdleTimeout <= 0 || hs.IdleTimeout > 5*time.Minute {
		t.Errorf("timeouts: header %v, read %v, idle %v", hs.ReadHeaderTimeout, hs.ReadTimeout, hs.IdleTimeout)
	}
}

// TestServeRefusesOpenNATSBeyondLoopback: --nats-listen 0.0.0.0 without
// credentials is refused at start-up; with a token it starts, and a worker
// joins with the token.
func TestServeRefusesOpenNATSBeyondLoopback(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := common{dataDir: t.TempDir(), backend: "cpu", threads: 1, concurrency: 0, maxTimeout: time.Hour,
		retention: time.Hour, maxDeliveries: 3, natsReplicas: 1, natsListen: "0.0.0.0:0"}
	if svc, err := startService(ctx, c, "127.0.0.1:0", false, quiet); err == nil {
		svc.close()
		t.Fatal("serve opened NATS on 0.0.0.0 without credentials")
	} else if !strings.Contains(err.Error(), "without credentials") || !strings.Contains(err.Error(), "--nats-token") {
		t.Errorf("error: %v", err)
	}
	c.natsSec.token = "tok-0123456789abcdef"
	svc, err := startService(ctx, c, "127.0.0.1:0", false, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.close()
}

// TestStartupSaysMetricsAreOpen: with neither keys nor a metrics token,
// the log says at start-up that /metrics is open.
func TestStartupSaysMetricsAreOpen(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logBuf syncBuffer
	c := common{dataDir: t.TempDir(), backend: "cpu", threads: 1, concurrency: 0, maxTimeout: time.Hour,
		retention: time.Hour, maxDeliveries: 3, natsReplicas: 1}
	svc, err := startService(ctx, c, "127.0.0.1:0", false, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	svc.close()
	if !strings.Contains(logBuf.String(), "/metrics is open") {
		t.Errorf("log does not say /metrics is open:\n%s", logBuf.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHugeHeaderUnknownColumnFailsOnce: an unknown column in a table with
// a 400 KB header (999 columns of 400 bytes). Before, the message listed
// every column (1 MB), too big for the job record, and the job re-ran
// until its deliveries ran out. Now the message is short and the job
// fails once as dataset_invalid.
func TestHugeHeaderUnknownColumnFailsOnce(t *testing.T) {
	var tab bytes.Buffer
	tab.WriteString("id")
	for i := range 998 {
		fmt.Fprintf(&tab, "\tcolumn%03d%s", i, strings.Repeat("h", 391))
	}
	tab.WriteString("\n1\n2\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(tab.Bytes()) }))
	t.Cleanup(srv.Close)
	e := startE2E(t, true)
	id := e.submit(fmt.Sprintf(`{"dataset_url":%q,"image_url_template":%q,"id_column":"nope"}`, srv.URL+"/wide.tab", srv.URL+"/img/{id}.png"))
	j := e.wait(id, time.Minute, ended)
	if j.Status != "failed" || j.Error == nil || j.Error.Code != "dataset_invalid" {
		t.Fatalf("job: %s %+v", j.Status, j.Error)
	}
	if len(j.Error.Message) > 4000 || !strings.Contains(j.Error.Message, "999 columns") {
		t.Errorf("message of %d bytes: %.300s", len(j.Error.Message), j.Error.Message)
	}
	if j.Attempts != nil && *j.Attempts != 1 {
		t.Errorf("attempts = %d", *j.Attempts)
	}
}
