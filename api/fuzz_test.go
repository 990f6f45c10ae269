package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
)

// FuzzSubmitBody sends arbitrary bodies to POST /v1/jobs on a real store:
// every answer is 202 or a 4xx problem naming what is wrong, never a 500
// or a panic. Run longer with
//
//	go test -run '^$' -fuzz FuzzSubmitBody -fuzztime 60s ./api
func FuzzSubmitBody(f *testing.F) {
	for _, seed := range []string{
		okBody, ``, `{}`, `null`, `[]`, `"x"`, `{"dataset_url":1}`, `{"dataset_url":"https://a.example/d.tab"}`,
		`{"dataset_url":"https://a.example/d.tab","image_url_template":"https://a/{id}","perplexity":-1}`,
		`{"dataset_url":"https://a.example/d.tab","image_url_column":"u","learning_rate":"auto","limit":0}`,
		`{"dataset_url":"https://a.example/d.tab","image_url_column":"u","learning_rate":1e400}`,
		`{"dataset_url":"https://a.example/d.tab","image_url_column":"u","image_size":{"width":4,"height":99999}}`,
		`{"dataset_url":"https://a.example/d.tab","image_url_column":"u","timeout_seconds":-5,"seed":-9223372036854775808}`,
		`{"dataset_url":"http://169.254.169.254/","image_url_template":"http://10.0.0.1/{id}"}`,
		`{"dataset_url":"https://a.example/d.tab","image_url_column":"u"} {}`, `{"dataset_url":"\u0000"}`,
		`{"dataset_url":"https://a.example/d.tab","image_url_column":"u","unknown":true}`,
	} {
		f.Add(seed)
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", "/v1/jobs", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req = req.WithContext(ctx)
		rec := httptest.NewRecorder()
		t0 := time.Now()
		e.ServeHTTP(rec, req)
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("%q took %v to answer (%d)", body, d, rec.Code)
		}
		code := rec.Code
		switch {
		case code == 202:
		case code >= 400 && code < 500:
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%d with Content-Type %q for %q", code, ct, body)
			}
			if !strings.Contains(rec.Body.String(), `"detail"`) {
				t.Errorf("%d without detail for %q: %s", code, body, rec.Body)
			}
		default:
			t.Errorf("%d for %q: %s", code, body, rec.Body)
		}
	})
}

// newFuzzEnv is the API on a real store, with no worker (submitted jobs
// stay queued) and no quotas, served in process.
func newFuzzEnv(f *testing.F) http.Handler {
	_, h := newStack(f, jobs.EmbeddedConfig{}, func(c *Config) { c.MaxImages = 1000 }, false)
	return h
}

// FuzzEventsDisconnect opens the event stream of a running job and hangs
// up after an arbitrary number of bytes (or before reading any): the
// server must not panic, must keep serving, and must not keep goroutines
// for streams whose clients left.
func FuzzEventsDisconnect(f *testing.F) {
	for _, seed := range []struct {
		n     uint16
		embed bool
	}{{0, false}, {1, true}, {17, false}, {200, true}, {4000, true}} {
		f.Add(seed.n, seed.embed)
	}
	_, h := newStack(f, jobs.EmbeddedConfig{}, nil, true)
	srv := httptest.NewServer(h)
	f.Cleanup(srv.Close)
	res, err := http.Post(srv.URL+"/v1/jobs", "application/json",
		strings.NewReader(`{"dataset_url":"https://m.example/slow","image_url_column":"u"}`))
	if err != nil {
		f.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	id := between(string(b), `"id":"`, `"`)
	if res.StatusCode != 202 || id == "" {
		f.Fatalf("submit: %d %s", res.StatusCode, b)
	}
	baseline := runtime.NumGoroutine()
	f.Fuzz(func(t *testing.T, n uint16, embed bool) {
		url := srv.URL + "/v1/jobs/" + id + "/events"
		if embed {
			url += "?embedding=1"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 {
			t.Fatalf("events: %d", res.StatusCode)
		}
		_, _ = io.CopyN(io.Discard, res.Body, int64(n)%2048)
		res.Body.Close() // hang up mid-stream
		cancel()
		// The server notices and lets the stream's goroutines go.
		testkit.Eventually(t, 10*time.Second, func() (bool, string) {
			n := runtime.NumGoroutine()
			return n <= baseline+10, fmt.Sprintf("%d goroutines after the client left, %d before", n, baseline)
		})
		// And keeps serving.
		r2, err := http.Get(srv.URL + "/v1/jobs/" + id)
		if err != nil || r2.StatusCode != 200 {
			t.Fatalf("after a hang-up: %v %v", err, r2)
		}
		r2.Body.Close()
	})
}

func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, to)
	return v
}

// FuzzAuthorization sends arbitrary Authorization headers to a server with
// keys: the answer is 200 for the one right key and 401 for everything
// else, never a 500 or a panic.
func FuzzAuthorization(f *testing.F) {
	for _, seed := range []string{"", "Bearer", "Bearer ", "Bearer " + aliceKey, "bearer " + aliceKey, "Bearer  " + aliceKey + " ",
		"Basic " + aliceKey, "Bearer " + aliceKey + "x", "Bearer " + aliceKey[:len(aliceKey)-1], aliceKey, "Bearer \x00", "Bearer alice:" + aliceKey} {
		f.Add(seed)
	}
	keys, err := ParseKeys(strings.NewReader("alice:" + aliceKey + "\n"))
	if err != nil {
		f.Fatal(err)
	}
	_, h := newStack(f, jobs.EmbeddedConfig{}, func(c *Config) { c.Keys = keys }, false)
	f.Fuzz(func(t *testing.T, auth string) {
		req := httptest.NewRequest("GET", "/v1/jobs", nil)
		req.Header["Authorization"] = []string{auth}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		scheme, tok, ok := strings.Cut(auth, " ")
		want := 401
		if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) == aliceKey {
			want = 200
		}
		if rec.Code != want {
			t.Errorf("Authorization %q: %d, want %d: %s", auth, rec.Code, want, rec.Body)
		}
	})
}

// FuzzParseKeys: any keys file is either refused with an error or gives
// keys that each have a name and a secret of at least 16 characters, all
// distinct; never a panic.
func FuzzParseKeys(f *testing.F) {
	for _, seed := range []string{"", "a:" + aliceKey, aliceKey + "\n" + bobKey, "#x\n\n a : " + aliceKey + " \n", ":" + aliceKey, "a:b:" + aliceKey, "a:\n"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, file string) {
		keys, err := ParseKeys(strings.NewReader(file))
		if err != nil {
			return
		}
		names, secrets := map[string]bool{}, map[string]bool{}
		for _, k := range keys {
			if k.Name == "" || len(k.Secret) < 16 || names[k.Name] || secrets[k.Secret] {
				t.Fatalf("bad key %+v from %q", k, file)
			}
			names[k.Name], secrets[k.Secret] = true, true
		}
	})
}
