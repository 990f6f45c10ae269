package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
	"github.com/tsnemap/tsnemap/jobs"
)

// server is the API behind an env (for checks of its internal state).
func (e *env) server() *Server { return e.srv.Config.Handler.(*Server) }

// openStream opens an event stream and returns its status; a 200 stream
// stays open until the test ends.
func (e *env) openStream(path string, header ...string) int {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.StatusCode != 200 {
		res.Body.Close()
		return res.StatusCode
	}
	// Read the first event, so the stream is known to be counted.
	if _, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { res.Body.Close() })
	return 200
}

// TestEventStreamsCappedPerKey: one key may hold at most MaxStreamsPerKey
// streams; the next is 429 (before, any number, each holding a watch).
// Another key has its own; a closed stream frees its place.
func TestEventStreamsCappedPerKey(t *testing.T) {
	e := keyed(t, func(c *Config) { c.MaxStreamsPerKey = 2 })
	slow := `{"dataset_url":"https://m.example/slow","image_url_column":"u"}`
	a := e.submitAs(aliceKey, slow)
	b := e.submitAs(bobKey, slow)
	path := "/v1/jobs/" + a.Id + "/events"
	for i := range 2 {
		if got := e.openStream(path, bearerOf(aliceKey)...); got != 200 {
			t.Fatalf("stream %d: %d", i, got)
		}
	}
	res, body := e.do("GET", path, "", bearerOf(aliceKey)...)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "event streams") {
		t.Errorf("third stream: %d %s", res.StatusCode, body)
	}
	if got := e.openStream("/v1/jobs/"+b.Id+"/events", bearerOf(bobKey)...); got != 200 {
		t.Errorf("bob's stream: %d", got)
	}
	st := e.server().streams
	st.mu.Lock()
	n := st.open["key:alice"]
	st.mu.Unlock()
	if n != 2 {
		t.Errorf("alice holds %d streams", n)
	}
}

// TestHeavyReadsQueue: with one place for heavy reads taken, a result
// read waits (its client gives up) instead of loading alongside; once the
// place is free it is served.
func TestHeavyReadsQueue(t *testing.T) {
	e := newEnvWith(t, jobs.EmbeddedConfig{}, func(c *Config) { c.MaxHeavyReads = 1 })
	j := e.submit(okBody)
	e.waitStatus(j.Id, "succeeded", 20*time.Second)
	s := e.server()
	s.heavy <- struct{}{} // the one place, taken
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/jobs/"+j.Id+"/result", nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("a result read ran while the only place was taken: %d", res.StatusCode)
	}
	<-s.heavy
	if res, b := e.do("GET", "/v1/jobs/"+j.Id+"/result", ""); res.StatusCode != 200 {
		t.Fatalf("after: %d %s", res.StatusCode, b)
	}
	testkit.Eventually(t, 5*time.Second, func() (bool, string) { return len(s.heavy) == 0, fmt.Sprintf("%d places held", len(s.heavy)) })
	// A map is rendered once, then served from the cache.
	for range 2 {
		if res, b := e.do("GET", "/v1/jobs/"+j.Id+"/map.png?width=200&height=100", ""); res.StatusCode != 200 {
			t.Fatalf("map: %d %s", res.StatusCode, b)
		}
	}
	s.maps.mu.Lock()
	cached := len(s.maps.items)
	s.maps.mu.Unlock()
	if cached != 1 {
		t.Errorf("%d maps cached", cached)
	}
	s.heavy <- struct{}{} // a cached map needs no place
	if res, b := e.do("GET", "/v1/jobs/"+j.Id+"/map.png?width=200&height=100", ""); res.StatusCode != 200 {
		t.Errorf("cached map while the place is taken: %d %s", res.StatusCode, b)
	}
	<-s.heavy
}

// TestNeutralizeFormulas: with the option, values a spreadsheet would run
// get a ' before them (numbers and coordinates stay); without it, every
// value comes out unchanged.
func TestNeutralizeFormulas(t *testing.T) {
	res := &jobs.Result{Columns: []string{"id", "=title", "n"}, Dimensions: 2, Rows: []jobs.ResultRow{
		{ID: "a", Values: []string{"a", `=HYPERLINK("http://evil.example","x")`, "-3.5"}, Coords: []float32{-1.5, 2}},
		{ID: "b", Values: []string{"b", "+1+cmd", "@SUM(A1)"}},
		{ID: "c", Values: []string{"c", "-x", "\tTAB"}},
	}}
	var plain, safe strings.Builder
	if err := WriteTableTo(&plain, res, ',', TableOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteTableTo(&safe, res, ',', TableOptions{NeutralizeFormulas: true}); err != nil {
		t.Fatal(err)
	}
	wantPlain := "id,=title,n,x,y\na,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",-3.5,-1.5,2\nb,+1+cmd,@SUM(A1),,\nc,-x,\tTAB,,\n"
	wantSafe := "id,'=title,n,x,y\na,\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",-3.5,-1.5,2\nb,'+1+cmd,'@SUM(A1),,\nc,'-x,'\tTAB,,\n"
	if plain.String() != wantPlain {
		t.Errorf("default:\n%q\nwant\n%q", plain.String(), wantPlain)
	}
	if safe.String() != wantSafe {
		t.Errorf("neutralized:\n%q\nwant\n%q", safe.String(), wantSafe)
	}
	e := newEnv(t)
	j := e.submit(okBody)
	e.waitStatus(j.Id, "succeeded", 20*time.Second)
	for _, q := range []string{"format=csv&neutralize_formulas=true", "format=tsv&neutralize_formulas=false"} {
		if res, b := e.do("GET", "/v1/jobs/"+j.Id+"/result?"+q, ""); res.StatusCode != 200 || !strings.HasPrefix(string(b), "id") {
			t.Errorf("%s: %d %s", q, res.StatusCode, b)
		}
	}
}
