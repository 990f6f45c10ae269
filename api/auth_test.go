package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

const (
	aliceKey = "alice-0123456789abcdef"
	bobKey   = "bob-0123456789abcdef01"
)

func keyed(t *testing.T, edit func(*Config)) *env {
	keys, err := ParseKeys(strings.NewReader("# test keys\nalice:" + aliceKey + "\n\nbob:" + bobKey + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, jobs.EmbeddedConfig{}, func(c *Config) {
		c.Keys = keys
		c.MetricsToken = "metrics-secret"
		if edit != nil {
			edit(c)
		}
	})
}

func bearerOf(key string) []string { return []string{"Authorization", "Bearer " + key} }

func (e *env) submitAs(key, body string) openapi.Job {
	e.t.Helper()
	return e.api.Submit(body, bearerOf(key)...)
}

func TestParseKeys(t *testing.T) {
	keys, err := ParseKeys(strings.NewReader("ci:" + aliceKey + "\n" + bobKey + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Name != "ci" || keys[1].Name == "" || strings.Contains(keys[1].Name, bobKey) {
		t.Errorf("keys = %+v", keys)
	}
	for name, file := range map[string]string{
		"short":          "x:short\n",
		"duplicate name": "a:" + aliceKey + "\na:" + bobKey + "\n",
		"duplicate key":  "a:" + aliceKey + "\nb:" + aliceKey + "\n",
		"empty":          "# nothing\n\n",
	} {
		if _, err := ParseKeys(strings.NewReader(file)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestKeysGuardEveryV1RouteAndOwnJobs(t *testing.T) {
	e := keyed(t, nil)
	// No key, a wrong key, a wrong scheme: 401 on every /v1 route, even
	// one the spec does not have (a route added later is covered too).
	for _, h := range [][]string{nil, bearerOf("not-a-key-0123456789"), {"Authorization", "Basic " + aliceKey}} {
		for _, r := range []struct{ method, path, body string }{
			{"POST", "/v1/jobs", okBody}, {"GET", "/v1/jobs", ""}, {"GET", "/v1/jobs/ABC", ""},
			{"DELETE", "/v1/jobs/ABC", ""}, {"GET", "/v1/jobs/ABC/result", ""}, {"GET", "/v1/jobs/ABC/failures", ""},
			{"GET", "/v1/jobs/ABC/events", ""}, {"GET", "/v1/jobs/ABC/atlas", ""},
		} {
			res, b := e.do(r.method, r.path, r.body, h...)
			if res.StatusCode != 401 || !strings.Contains(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with %v: %d %s", r.method, r.path, h, res.StatusCode, b)
			}
		}
	}
	// Open without a key: health, readiness, the spec.
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/openapi.yaml"} {
		if res, b := e.do("GET", p, ""); res.StatusCode != 200 {
			t.Errorf("GET %s: %d %s", p, res.StatusCode, b)
		}
	}
	// /metrics has its own token.
	if res, _ := e.do("GET", "/metrics", ""); res.StatusCode != 401 {
		t.Errorf("metrics without token: %d", res.StatusCode)
	}
	if res, _ := e.do("GET", "/metrics", "", bearerOf(aliceKey)...); res.StatusCode != 401 {
		t.Errorf("metrics with an API key: %d", res.StatusCode)
	}
	if res, _ := e.do("GET", "/metrics", "", bearerOf("metrics-secret")...); res.StatusCode != 200 {
		t.Errorf("metrics with its token: %d", res.StatusCode)
	}

	mine := e.submitAs(aliceKey, okBody)
	slow := e.submitAs(aliceKey, `{"dataset_url":"https://m.example/slow","image_url_column":"u"}`)
	res, b := e.do("GET", "/v1/jobs/"+mine.Id, "", bearerOf(aliceKey)...)
	if res.StatusCode != 200 {
		t.Fatalf("owner reads own job: %d %s", res.StatusCode, b)
	}
	// Bob sees nothing of Alice's: every job route is 404, like a job that
	// does not exist, and his list is empty.
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/jobs/" + mine.Id}, {"GET", "/v1/jobs/" + mine.Id + "/result"}, {"GET", "/v1/jobs/" + mine.Id + "/failures"},
		{"GET", "/v1/jobs/" + slow.Id + "/events"}, {"DELETE", "/v1/jobs/" + slow.Id}, {"DELETE", "/v1/jobs/" + mine.Id},
	} {
		res, b := e.do(r.method, r.path, "", bearerOf(bobKey)...)
		if res.StatusCode != 404 {
			t.Errorf("bob %s %s: %d %s", r.method, r.path, res.StatusCode, b)
		}
	}
	var list openapi.JobList
	_, b = e.do("GET", "/v1/jobs", "", bearerOf(bobKey)...)
	if err := json.Unmarshal(b, &list); err != nil || len(list.Jobs) != 0 {
		t.Errorf("bob's list: %s", b)
	}
	_, b = e.do("GET", "/v1/jobs", "", bearerOf(aliceKey)...)
	if err := json.Unmarshal(b, &list); err != nil || len(list.Jobs) != 2 {
		t.Errorf("alice's list: %s", b)
	}
	// Bob's DELETE did not cancel Alice's running job; hers does.
	if j, _ := e.store.Get(t.Context(), slow.Id); j.CancelRequested || j.Owner != "alice" {
		t.Errorf("after bob's DELETE: cancel requested %v, owner %q", j.CancelRequested, j.Owner)
	}
	if res, b := e.do("DELETE", "/v1/jobs/"+slow.Id, "", bearerOf(aliceKey)...); res.StatusCode != 202 {
		t.Errorf("alice cancels: %d %s", res.StatusCode, b)
	}
	// The stored record names the key, never holds it.
	raw, _ := e.store.Get(t.Context(), mine.Id)
	if rb, _ := json.Marshal(raw); strings.Contains(string(rb), aliceKey) {
		t.Errorf("the job record holds the key: %s", rb)
	}
}

func TestQuotaOnActiveJobs(t *testing.T) {
	e := keyed(t, func(c *Config) { c.MaxActiveJobs = 2 })
	slow := `{"dataset_url":"https://m.example/slow","image_url_column":"u"}`
	a := e.submitAs(aliceKey, slow)
	e.submitAs(aliceKey, slow)
	res, b := e.do("POST", "/v1/jobs", slow, bearerOf(aliceKey)...)
	if res.StatusCode != 429 {
		t.Fatalf("third active job: %d %s", res.StatusCode, b)
	}
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After = %q", res.Header.Get("Retry-After"))
	}
	if !strings.Contains(string(b), "max-active-jobs") {
		t.Errorf("problem does not name the limit: %s", b)
	}
	e.submitAs(bobKey, slow) // another key has its own quota
	// Once one of Alice's ends, she may submit again.
	e.do("DELETE", "/v1/jobs/"+a.Id, "", bearerOf(aliceKey)...)
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		res, b := e.do("POST", "/v1/jobs", slow, bearerOf(aliceKey)...)
		if res.StatusCode != 202 && res.StatusCode != 429 {
			t.Fatalf("after a cancel: %d %s", res.StatusCode, b)
		}
		return res.StatusCode == 202, fmt.Sprintf("%d %s", res.StatusCode, b)
	}, "submit after a cancel")
}

func TestSubmitRateLimit(t *testing.T) {
	e := keyed(t, func(c *Config) { c.SubmitRate, c.SubmitBurst = 0.01, 3 })
	// The budget counts jobs created: refused requests (400 bad field,
	// 415 not JSON) cost nothing, however many.
	for i := 0; i < 10; i++ {
		if res, b := e.do("POST", "/v1/jobs", `{"dataset_url":"https://m.example/d.tab","image_url_column":"u","perplexity":-1}`, bearerOf(aliceKey)...); res.StatusCode != 400 {
			t.Fatalf("bad submit %d: %d %s", i, res.StatusCode, b)
		}
	}
	for i := 0; i < 3; i++ {
		e.submitAs(aliceKey, okBody)
	}
	res, b := e.do("POST", "/v1/jobs", okBody, bearerOf(aliceKey)...)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth submit in a burst of 3: %d %s (Retry-After %q)", res.StatusCode, b, res.Header.Get("Retry-After"))
	}
	e.submitAs(bobKey, okBody) // a bucket per key
	// Reads are never rate limited.
	for i := 0; i < 20; i++ {
		if res, _ := e.do("GET", "/v1/jobs", "", bearerOf(aliceKey)...); res.StatusCode != 200 {
			t.Fatalf("list: %d", res.StatusCode)
		}
	}
}

func TestMaxImagesCapsLimit(t *testing.T) {
	e := newEnvWith(t, jobs.EmbeddedConfig{}, func(c *Config) { c.MaxImages = 10 })
	res, b := e.do("POST", "/v1/jobs", `{"dataset_url":"https://m.example/d.tab","image_url_column":"u","limit":11}`)
	if res.StatusCode != 400 || !strings.Contains(string(b), `"field":"limit"`) || !strings.Contains(string(b), "max-images") {
		t.Errorf("limit over --max-images: %d %s", res.StatusCode, b)
	}
	e.submit(`{"dataset_url":"https://m.example/d.tab","image_url_column":"u","limit":10}`)
}

// TestStoreFullAnswers503 fills the job store. A full or read-only disk
// cannot be made in a test without privileges (and root ignores chmod), so
// the embedded NATS gets a small storage limit (JetStream's max_file_store,
// --max-store): JetStream then refuses writes as it does when its disk is
// full. Submits answer 503 store-full, nothing is half-written (every job
// the store holds was answered 202), and submits succeed again once space
// is freed.
func TestStoreFullAnswers503(t *testing.T) {
	e := newEnvWith(t, jobs.EmbeddedConfig{MaxStore: 256 << 10}, nil)
	accepted := map[string]bool{}
	var full []byte
	for i := 0; i < 5000 && full == nil; i++ {
		res, b := e.do("POST", "/v1/jobs", okBody)
		switch res.StatusCode {
		case 202:
			var j openapi.Job
			_ = json.Unmarshal(b, &j)
			accepted[j.Id] = true
		case 503:
			full = b
			if ra := res.Header.Get("Retry-After"); ra != "30" {
				t.Errorf("503 store-full: Retry-After %q, want 30", ra)
			}
		default:
			t.Fatalf("submit %d: %d %s", i, res.StatusCode, b)
		}
	}
	if full == nil {
		t.Fatalf("the store never filled (%d jobs accepted)", len(accepted))
	}
	if !strings.Contains(string(full), "store-full") || !strings.Contains(string(full), "nothing was queued") {
		t.Errorf("503 problem: %s", full)
	}
	t.Logf("store full after %d jobs: %s", len(accepted), full)
	// Nothing half-written: the store holds exactly the accepted jobs.
	ctx := t.Context()
	held, _, err := e.store.List(ctx, "", 100000, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range held {
		if !accepted[j.ID] {
			t.Errorf("job %s is in the store but its submit was refused", j.ID)
		}
	}
	if len(held) != len(accepted) {
		t.Errorf("store holds %d jobs, %d were accepted", len(held), len(accepted))
	}
	// A DELETE needs room too (JetStream writes a marker): when it
	// cannot have it, it answers 503, never 500. Space returning is
	// TestStoreFullThenSpaceReturns in cmd/tsnemap (the server restarted
	// with a larger limit, as after an operator frees the disk).
	for id := range accepted {
		res, b := e.do("DELETE", "/v1/jobs/"+id, "")
		if res.StatusCode != 503 && res.StatusCode != 202 && res.StatusCode != 204 {
			t.Errorf("delete while full: %d %s", res.StatusCode, b)
		}
	}
}

// TestQuotaHoldsUnderConcurrentSubmits: 20 submits at once against a cap
// of 5 leave exactly 5 jobs.
func TestQuotaHoldsUnderConcurrentSubmits(t *testing.T) {
	e := keyed(t, func(c *Config) { c.MaxActiveJobs = 5 })
	slow := `{"dataset_url":"https://m.example/slow","image_url_column":"u"}`
	codes := make(chan int, 20)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Go(func() {
			res, _ := e.do("POST", "/v1/jobs", slow, bearerOf(aliceKey)...)
			codes <- res.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	n := map[int]int{}
	for c := range codes {
		n[c]++
	}
	if n[202] != 5 || n[429] != 15 {
		t.Errorf("answers %v, want 5×202 and 15×429", n)
	}
}

// idSpellings are ways of writing id in a path that a router may keep raw
// and a decoder turn back into id: the canonical form, one character
// percent-encoded (first, last; upper- and lower-case hex), every character
// encoded, and a trailing slash.
func idSpellings(id string) map[string]string {
	enc := func(c byte, lower bool) string {
		s := fmt.Sprintf("%%%02X", c)
		if lower {
			s = strings.ToLower(s)
		}
		return s
	}
	all := ""
	for i := range len(id) {
		all += enc(id[i], i%2 == 0)
	}
	last := len(id) - 1
	return map[string]string{
		"canonical":        id,
		"first encoded":    enc(id[0], false) + id[1:],
		"last encoded":     id[:last] + enc(id[last], false),
		"lower-case hex":   id[:last] + enc(id[last], true),
		"all encoded":      all,
		"double encoded":   "%25" + fmt.Sprintf("%02X", id[0]) + id[1:],
		"trailing slash":   id + "/",
		"encoded slash":    id + "%2F",
		"dot segment":      "x/../" + id,
		"encoded dot seg.": "x%2F..%2F" + id,
	}
}

// jobRoutes reads every operation under /v1/jobs/{id} from the spec, so a
// route added later is walked too.
func jobRoutes(t *testing.T) []struct{ method, path string } {
	doc, err := openapi.Load()
	if err != nil {
		t.Fatal(err)
	}
	var out []struct{ method, path string }
	for p, item := range doc.Paths.Map() {
		if !strings.HasPrefix(p, "/v1/jobs/{id}") {
			continue
		}
		for m := range item.Operations() {
			out = append(out, struct{ method, path string }{m, p})
		}
	}
	// Reads first, DELETE last: a leaked delete must not hide a leaked read.
	sort.Slice(out, func(i, j int) bool {
		if (out[i].method == "DELETE") != (out[j].method == "DELETE") {
			return out[j].method == "DELETE"
		}
		return out[i].path+out[i].method < out[j].path+out[j].method
	})
	if len(out) < 8 {
		t.Fatalf("only %d job routes in the spec: %v", len(out), out)
	}
	return out
}

// TestNoSpellingOfAJobIdReachesAnotherKeysJob walks every job route of the
// spec with every spelling of the id of Alice's jobs (one finished, one
// running) as Bob: nothing answers 2xx or 3xx, nothing of the job shows in
// a body, and Alice's jobs are neither cancelled nor deleted. The same
// spellings as Alice reach her jobs, so the walk does reach the handlers.
func TestNoSpellingOfAJobIdReachesAnotherKeysJob(t *testing.T) {
	e := keyed(t, nil)
	done := e.submitAs(aliceKey, okBody)
	slow := e.submitAs(aliceKey, `{"dataset_url":"https://m.example/slow","image_url_column":"u"}`)
	testkit.Eventually(t, 20*time.Second, func() (bool, string) {
		a, _ := e.store.Get(t.Context(), done.Id)
		b, _ := e.store.Get(t.Context(), slow.Id)
		return a.Status == jobs.StatusSucceeded && b.Status == jobs.StatusRunning && b.HasAtlas,
			fmt.Sprintf("done is %s, slow is %s", a.Status, b.Status)
	})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(key, method, path string) (int, string) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, method, e.srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer res.Body.Close()
		// A leaked event stream would not end: read until the deadline.
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		return res.StatusCode, string(b)
	}
	reached := 0
	for _, r := range jobRoutes(t) {
		for _, job := range []openapi.Job{done, slow} {
			for name, spelled := range idSpellings(job.Id) {
				path := strings.NewReplacer("{id}", spelled, "{sheet}", "0").Replace(r.path)
				code, body := send(bobKey, r.method, path)
				if code < 400 || strings.Contains(body, "alice") || (code != 404 && code != 405 && code != 400) {
					t.Errorf("bob %s %s (%s): %d %.200s", r.method, path, name, code, body)
				}
				if r.method == "GET" && !strings.HasSuffix(r.path, "/events") {
					if code, _ := send(aliceKey, r.method, path); code == 200 && name != "canonical" {
						reached++
					}
				}
			}
		}
	}
	if reached == 0 {
		t.Error("no encoded spelling reached Alice's own jobs: the walk tests nothing")
	}
	for _, id := range []string{done.Id, slow.Id} {
		j, err := e.store.Get(t.Context(), id)
		if err != nil || j.CancelRequested || j.Status == jobs.StatusCanceled {
			t.Errorf("alice's job %s after bob's walk: %v, cancel requested %v, %s", id, err, j.CancelRequested, j.Status)
		}
	}
}
