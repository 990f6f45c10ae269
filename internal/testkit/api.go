package testkit

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/tsnemap/tsnemap/openapi"
)

// API drives the service's HTTP API for a test and checks every answer
// against openapi/openapi.yaml: an answer outside the spec, an error that
// is not problem+json, a 5xx other than 503, or a route the spec lacks
// answering other than 401, 404 or 405 fails the test.
type API struct {
	// Client sends the requests (nil: http.DefaultClient).
	Client *http.Client
	tb     testing.TB
	base   string
	router routers.Router
}

// NewAPI returns an API for the service at base (e.g. an httptest
// server's URL).
func NewAPI(tb testing.TB, base string) *API {
	tb.Helper()
	router, err := specRouter()
	if err != nil {
		tb.Fatal(err)
	}
	return &API{tb: tb, base: base, router: router}
}

// specRouter finds a request's route in the spec. It is built once per
// test binary (parsing and validating the spec takes ~10 ms, too long to
// repeat for each poll of a job) and only read after.
var specRouter = sync.OnceValues(func() (routers.Router, error) {
	doc, err := openapi.Load()
	if err != nil {
		return nil, err
	}
	doc.Servers = nil
	return legacy.NewRouter(doc)
})

// URL is the address of path on the service.
func (a *API) URL(path string) string { return a.base + path }

// Do sends a request (a body is sent as JSON; header is name, value
// pairs) and returns the answer, read whole, once checked.
func (a *API) Do(method, path, body string, header ...string) (*http.Response, []byte) {
	a.tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.tb.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := a.Client
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		a.tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		a.tb.Fatal(err)
	}
	a.check(req, res, b)
	return res, b
}

func (a *API) check(req *http.Request, res *http.Response, body []byte) {
	a.tb.Helper()
	if res.StatusCode >= 400 {
		if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
			a.tb.Errorf("%s %s: %d with Content-Type %q, want application/problem+json", req.Method, req.URL.Path, res.StatusCode, ct)
		}
		if res.StatusCode >= 500 && res.StatusCode != 503 {
			a.tb.Errorf("%s %s: server error %d: %s", req.Method, req.URL.Path, res.StatusCode, body)
		}
	}
	route, params, err := a.router.FindRoute(req)
	if err != nil {
		// 401: a /v1 route the spec does not have is guarded all the same.
		if res.StatusCode != 404 && res.StatusCode != 405 && res.StatusCode != 401 {
			a.tb.Errorf("%s %s is not in the spec but answered %d", req.Method, req.URL.Path, res.StatusCode)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: res.StatusCode,
		Header: res.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
			// Text bodies (TSV, CSV, SSE, metrics) are strings; their
			// content is checked by the tests themselves.
			ExcludeResponseBody: !strings.Contains(res.Header.Get("Content-Type"), "json")},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		a.tb.Errorf("%s %s answered %d outside the spec: %v\nbody: %s", req.Method, req.URL.Path, res.StatusCode, err, body)
	}
}

// Submit posts a JobRequest and returns the job, which must be accepted
// (202, Location naming it).
func (a *API) Submit(body string, header ...string) openapi.Job {
	a.tb.Helper()
	res, b := a.Do("POST", "/v1/jobs", body, header...)
	if res.StatusCode != 202 {
		a.tb.Fatalf("submit: %d %s", res.StatusCode, b)
	}
	var j openapi.Job
	if err := json.Unmarshal(b, &j); err != nil {
		a.tb.Fatal(err)
	}
	if loc := res.Header.Get("Location"); loc != "/v1/jobs/"+j.Id {
		a.tb.Errorf("submit: Location %q, want /v1/jobs/%s", loc, j.Id)
	}
	return j
}

// Job gets a job, which must exist.
func (a *API) Job(id string, header ...string) openapi.Job {
	a.tb.Helper()
	res, b := a.Do("GET", "/v1/jobs/"+id, "", header...)
	var j openapi.Job
	if res.StatusCode != 200 || json.Unmarshal(b, &j) != nil {
		a.tb.Fatalf("get job %s: %d %s", id, res.StatusCode, b)
	}
	return j
}

// WaitJob polls a job until ok holds of it, and fails the test if it does
// not within the given time.
func (a *API) WaitJob(id string, within time.Duration, ok func(openapi.Job) bool, header ...string) openapi.Job {
	a.tb.Helper()
	var j openapi.Job
	Eventually(a.tb, within, func() (bool, string) {
		j = a.Job(id, header...)
		return ok(j), describe(j)
	}, "job %s", id)
	return j
}

func describe(j openapi.Job) string {
	s := string(j.Status) + "/" + string(j.Stage)
	if j.Error != nil {
		s += " (" + string(j.Error.Code) + ": " + j.Error.Message + ")"
	}
	return s
}

// Ended says whether a job has finished: succeeded, failed or canceled.
func Ended(j openapi.Job) bool {
	return j.Status == openapi.JobStatusSucceeded || j.Status == openapi.JobStatusFailed || j.Status == openapi.JobStatusCanceled
}

// Is returns a condition for WaitJob: the job has status s.
func Is(s openapi.JobStatus) func(openapi.Job) bool {
	return func(j openapi.Job) bool { return j.Status == s }
}
