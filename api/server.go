// Package api is tsnemap's HTTP API: Echo handlers implementing the
// interface generated from openapi/openapi.yaml, requests validated against
// that spec, problem+json errors, Server-Sent Events and metrics.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tsnemap/tsnemap/atlas"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

// Jobs is what the API needs of the job store (jobs.Store provides it).
type Jobs interface {
	Submit(ctx context.Context, req jobs.Request) (jobs.Job, error)
	Get(ctx context.Context, id string) (jobs.Job, error)
	BaseOf(ctx context.Context, id string) (jobs.Job, error)
	List(ctx context.Context, status jobs.Status, limit int, after string) ([]jobs.Job, string, error)
	ListOwned(ctx context.Context, owner string, status jobs.Status, limit int, after string) ([]jobs.Job, string, error)
	ActiveJobs(ctx context.Context, owner string) (int, error)
	Cancel(ctx context.Context, id string) (jobs.Job, bool, error)
	Result(ctx context.Context, id string) (*jobs.Result, error)
	Failures(ctx context.Context, id string) ([]jobs.Failure, error)
	AtlasIndex(ctx context.Context, id string) (*atlas.Index, error)
	AtlasSheet(ctx context.Context, id string, k int) ([]byte, error)
	Watch(ctx context.Context, id string) (<-chan jobs.Job, error)
	Embeddings(ctx context.Context, id string) (<-chan []byte, error)
	Additions(ctx context.Context, id string) (<-chan []byte, error)
	Ready(ctx context.Context) error
	CountByStatus(ctx context.Context) (map[jobs.Status]int, error)
}

// URLPolicy says whether the server may fetch a URL (the loader's
// private-network guard). An error means it may not; its text says why.
type URLPolicy interface {
	ValidateURL(ctx context.Context, rawURL string) error
}

// Config configures a Server.
type Config struct {
	Jobs Jobs
	// URLs, if set, vets dataset and image URLs when a job is submitted.
	URLs URLPolicy
	// Backend names the compute backend for /readyz, e.g. "cpu (2 threads)".
	Backend string
	// GPU says whether jobs may ask for backend "gpu".
	GPU bool
	// GPUHealth, if set, is nil while the GPU can run jobs, else why not;
	// /readyz reports it in its detail (the service stays ready: jobs
	// asking for "auto" run on the CPU meanwhile).
	GPUHealth func() error
	// MaxTimeout is the default and the cap of timeout_seconds.
	MaxTimeout time.Duration
	// Web serves the page at / and its files under /static/ (package
	// web); nil leaves them out.
	Web http.Handler
	// Version is reported by /healthz.
	Version string
	// Registry receives the API's metrics and is served at /metrics; nil
	// makes a private one.
	Registry *prometheus.Registry
	Logger   *slog.Logger

	// Keys, if any, are needed on every /v1 call, and each job is seen
	// only by the key that submitted it. None: the API is open (the
	// command then listens on loopback only, unless told otherwise).
	Keys []Key
	// MetricsToken, if set, is needed (as a bearer token) on /metrics.
	MetricsToken string
	// MaxActiveJobs caps the queued and running jobs of one key (or of
	// everyone, without keys); 0: no cap.
	MaxActiveJobs int
	// MinFollowInterval is the shortest follow_interval_seconds accepted
	// (0: one minute).
	MinFollowInterval time.Duration
	// SubmitRate (per second) and SubmitBurst bound the POSTs of one key
	// (or one client address, without keys); 0: no bound.
	SubmitRate  float64
	SubmitBurst int
	// MaxImages caps a job's rows and images (and its `limit`); 0: none.
	MaxImages int
	// AllowedHosts are the host names (Host header, port aside) that /v1
	// and /metrics answer to; "*" for any. None: loopback names without
	// keys (against DNS rebinding; IP addresses pass), any name with keys.
	AllowedHosts []string
	// MaxStreamsPerKey caps the event streams one key (one client address,
	// without keys) holds open at once; past it, 429. 0: no cap.
	MaxStreamsPerKey int
	// MaxHeavyReads caps the result reads and map renders running at once
	// (others wait); 0: 2.
	MaxHeavyReads int
	// TrustedProxies are the addresses whose X-Forwarded-For is believed
	// (for the per-client submit limit and the log); from anyone else the
	// header is ignored.
	TrustedProxies []netip.Prefix
	// Demo, if set, is served at /demo.json (serve --demo).
	Demo *openapi.DemoCatalogue
}

// Server serves the API.
type Server struct {
	cfg      Config
	log      *slog.Logger
	echo     *echo.Echo
	router   routers.Router
	doc      *openapi3.T
	specJSON []byte
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	keys     *keyring // nil: no keys
	hosts    *hostGuard
	streams  *streams
	heavy    chan struct{}
	maps     *mapCache

	// quotaMu serialises, per owner, the count of active jobs and the
	// submit it allows, so concurrent submits cannot all pass one free
	// slot (on one API node; nodes share the store, not these locks).
	quotaMu   sync.Mutex
	quotaLock map[string]*sync.Mutex
}

var _ openapi.ServerInterface = (*Server)(nil)

// New builds the server.
func New(cfg Config) (*Server, error) {
	if cfg.Jobs == nil {
		return nil, errors.New("api: Config.Jobs is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxTimeout <= 0 {
		cfg.MaxTimeout = 24 * time.Hour
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	doc, router, err := newRouter()
	if err != nil {
		return nil, err
	}
	specJSON, err := openapi.JSON()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, router: router, doc: doc, specJSON: specJSON}
	if len(cfg.Keys) > 0 {
		s.keys = newKeyring(cfg.Keys)
	}
	s.hosts = newHostGuard(cfg.AllowedHosts, s.keys != nil)
	s.streams = &streams{open: map[string]int{}, max: cfg.MaxStreamsPerKey}
	if cfg.MaxHeavyReads <= 0 {
		cfg.MaxHeavyReads = 2
	}
	s.heavy = make(chan struct{}, cfg.MaxHeavyReads)
	s.maps = newMapCache(32 << 20)
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsnemap_http_requests_total",
		Help: "HTTP requests answered, by route and status code."}, []string{"method", "route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tsnemap_http_request_duration_seconds",
		Help: "Time to answer HTTP requests (SSE streams excluded)."}, []string{"method", "route"})
	cfg.Registry.MustRegister(s.requests, s.latency, &statusCollector{jobs: cfg.Jobs, log: s.log})

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.IPExtractor = ipExtractor(cfg.TrustedProxies)
	e.Use(noSniff)
	e.Use(s.accessLog)
	e.Use(middleware.Recover())
	e.Use(s.checkHost)
	e.Use(middleware.BodyLimit("1MB"))
	e.Use(s.authenticate)
	e.Use(s.submitRateLimit())
	e.Use(s.validateRequests)
	openapi.RegisterHandlers(e, s)
	if cfg.Web != nil {
		e.GET("/static/*", echo.WrapHandler(cfg.Web))
		e.HEAD("/static/*", echo.WrapHandler(cfg.Web))
	}
	s.echo = e
	return s, nil
}

// Handler is the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s }

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// noSniff tells browsers to take every answer as the type it says it is
// (a result table with an HTML-looking value is not run as a page).
func noSniff(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("X-Content-Type-Options", "nosniff")
		return next(c)
	}
}

// MetricsOpen says whether /metrics answers anyone: no token, no keys.
func (s *Server) MetricsOpen() bool { return s.cfg.MetricsToken == "" && s.keys == nil }

// accessLog logs each request once it is answered, and counts it.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // answer now, so the status below is the real one
		}
		req, res := c.Request(), c.Response()
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start)
		s.requests.WithLabelValues(req.Method, route, fmt.Sprint(res.Status)).Inc()
		if !strings.HasSuffix(route, "/events") {
			s.latency.WithLabelValues(req.Method, route).Observe(d.Seconds())
		}
		level := slog.LevelInfo
		if res.Status >= 500 {
			level = slog.LevelError
		}
		s.log.LogAttrs(req.Context(), level, "http", slog.String("method", req.Method), slog.String("path", req.URL.Path),
			slog.Int("status", res.Status), slog.Int64("bytes", res.Size), slog.Duration("duration", d),
			slog.String("remote", c.RealIP()))
		return nil
	}
}

// statusCollector reports jobs by status at scrape time, from the store
// shared by all nodes (so every node reports the same numbers).
type statusCollector struct {
	jobs Jobs
	log  *slog.Logger
}

var jobsDesc = prometheus.NewDesc("tsnemap_jobs", "Jobs in the store, by status.", []string{"status"}, nil)

func (sc *statusCollector) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }

func (sc *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := sc.jobs.CountByStatus(ctx)
	if err != nil {
		sc.log.Warn("metrics: count jobs", "err", err)
		return
	}
	for _, st := range []jobs.Status{jobs.StatusQueued, jobs.StatusRunning, jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCanceled} {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}

func (s *Server) GetPage(c echo.Context) error {
	if s.cfg.Web == nil {
		return newProblem(http.StatusNotFound, "not-found", "No page", "this server has no web page; the API is under /v1 (see /openapi.yaml)")
	}
	s.cfg.Web.ServeHTTP(c.Response(), c.Request())
	return nil
}

func (s *Server) GetHealth(c echo.Context) error {
	v := s.cfg.Version
	return c.JSON(http.StatusOK, openapi.Health{Status: "ok", Version: &v})
}

func (s *Server) GetReady(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	r := openapi.Readiness{Status: openapi.Ready, Backend: s.cfg.Backend, Store: "nats jetstream"}
	if err := s.cfg.Jobs.Ready(ctx); err != nil {
		msg := err.Error()
		r.Status, r.Detail = openapi.NotReady, &msg
		return c.JSON(http.StatusServiceUnavailable, r)
	}
	if s.cfg.GPUHealth != nil {
		if err := s.cfg.GPUHealth(); err != nil {
			msg := "GPU unusable (jobs asking for \"auto\" run on the CPU, for \"gpu\" fail until it is reopened): " + err.Error()
			r.Detail = &msg
		}
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) GetMetrics(c echo.Context) error {
	promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}).ServeHTTP(c.Response(), c.Request())
	return nil
}

func (s *Server) GetOpenAPIYAML(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", openapi.YAML)
}

func (s *Server) GetOpenAPIJSON(c echo.Context) error {
	return c.JSONBlob(http.StatusOK, s.specJSON)
}

// jobError maps the store's errors to answers.
func jobError(id string, err error) error {
	id = shorten(id, 80) // a path may be long; the answer stays short
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return newProblem(http.StatusNotFound, "not-found", "Job not found", fmt.Sprintf("there is no job %q (it may have been deleted)", id))
	case errors.Is(err, jobs.ErrConflict):
		return newProblem(http.StatusConflict, "not-ready", "Result not available", err.Error())
	case errors.Is(err, jobs.ErrStoreFull):
		return newProblem(http.StatusServiceUnavailable, "store-full", "Job store out of space",
			"the job store (NATS JetStream under the server's data directory) has no room for this change: its disk is full or read-only, or its storage limit is reached; nothing was changed")
	}
	return err
}

func (s *Server) GetJob(c echo.Context, id openapi.JobID) error {
	job, err := s.cfg.Jobs.Get(c.Request().Context(), id)
	if err != nil {
		return jobError(id, err)
	}
	return c.JSON(http.StatusOK, toAPI(job))
}

func (s *Server) ListJobs(c echo.Context, params openapi.ListJobsParams) error {
	limit := 20
	if params.Limit != nil {
		limit = *params.Limit
	}
	var status jobs.Status
	if params.Status != nil {
		status = jobs.Status(*params.Status)
	}
	after := ""
	if params.PageToken != nil && *params.PageToken != "" {
		after = *params.PageToken
		if !jobs.ValidID(after) {
			return fieldProblem(http.StatusBadRequest, "page_token", "is not a token this server gave out; start again without it")
		}
	}
	var list []jobs.Job
	var next string
	var err error
	if s.keys != nil {
		list, next, err = s.cfg.Jobs.ListOwned(c.Request().Context(), owner(c), status, limit, after)
	} else {
		list, next, err = s.cfg.Jobs.List(c.Request().Context(), status, limit, after)
	}
	if err != nil {
		return err
	}
	out := openapi.JobList{Jobs: make([]openapi.Job, 0, len(list))}
	for _, j := range list {
		out.Jobs = append(out.Jobs, toAPI(j))
	}
	if next != "" {
		out.NextPageToken = &next
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) DeleteJob(c echo.Context, id openapi.JobID) error {
	ctx := c.Request().Context()
	job, deleted, err := s.cfg.Jobs.Cancel(ctx, id)
	if err != nil {
		return jobError(id, err)
	}
	if deleted {
		return c.NoContent(http.StatusNoContent)
	}
	// A running job stops within moments; wait a little so the answer
	// usually shows it canceled, but never long.
	if !job.Status.Terminal() {
		wctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
		defer cancel()
		if updates, err := s.cfg.Jobs.Watch(wctx, id); err == nil {
			for j := range updates {
				job = j
				if j.Status.Terminal() {
					break
				}
			}
		}
	}
	return c.JSON(http.StatusAccepted, toAPI(job))
}

func (s *Server) GetJobFailures(c echo.Context, id openapi.JobID) error {
	f, err := s.cfg.Jobs.Failures(c.Request().Context(), id)
	if err != nil {
		return jobError(id, err)
	}
	return c.JSON(http.StatusOK, openapi.FailureList{Failures: toAPIFailures(f)})
}

// toAPI renders a job as the contract's Job.
func toAPI(j jobs.Job) openapi.Job {
	r := j.Request
	n := openapi.NormalizedJobRequest{
		DatasetUrl:             r.DatasetURL,
		IdColumn:               r.IDColumn,
		Metric:                 normalizedMetric(r.Metric),
		ImageSize:              openapi.ImageSize{Width: r.ImageSize.Width, Height: r.ImageSize.Height},
		Method:                 openapi.NormalizedJobRequestMethod(r.Method),
		Dimensions:             openapi.NormalizedJobRequestDimensions(r.Dimensions),
		Perplexity:             r.Perplexity,
		Iterations:             r.Iterations,
		EarlyExaggeration:      r.EarlyExaggeration,
		ExaggerationIterations: r.ExaggerationIterations,
		Init:                   openapi.NormalizedJobRequestInit(r.Init),
		Seed:                   r.Seed,
		Backend:                openapi.NormalizedJobRequestBackend(r.Backend),
		TimeoutSeconds:         r.TimeoutSeconds,
		Grid:                   r.Grid,
	}
	if r.ImageURLTemplate != "" {
		n.ImageUrlTemplate = &r.ImageURLTemplate
	}
	if r.ImageURLColumn != "" {
		n.ImageUrlColumn = &r.ImageURLColumn
	}
	if r.FeaturesURL != "" {
		n.FeaturesUrl = &r.FeaturesURL
	}
	if r.FeaturesColumn != "" {
		n.FeaturesColumn = &r.FeaturesColumn
	}
	if r.BaseJobID != "" {
		n.BaseJobId = &r.BaseJobID
	}
	if r.FollowIntervalSeconds > 0 {
		n.FollowIntervalSeconds = &r.FollowIntervalSeconds
	}
	if r.Limit > 0 {
		n.Limit = &r.Limit
	}
	if r.ShardSize > 0 {
		n.ShardSize = &r.ShardSize
	}
	if r.LearningRate == 0 {
		_ = n.LearningRate.FromLearningRate1(openapi.LearningRate1Auto)
	} else {
		_ = n.LearningRate.FromLearningRate0(float64(r.LearningRate))
	}
	out := openapi.Job{
		Id:         j.ID,
		Status:     openapi.JobStatus(j.Status),
		Stage:      openapi.JobStage(j.Stage),
		Backend:    j.Backend,
		Request:    n,
		CreatedAt:  j.CreatedAt,
		StartedAt:  j.StartedAt,
		FinishedAt: j.FinishedAt,
		Progress: openapi.Progress{
			ImagesTotal:    j.Progress.ImagesTotal,
			ImagesLoaded:   j.Progress.ImagesLoaded,
			ImagesFailed:   j.Progress.ImagesFailed,
			RowsDropped:    j.Progress.RowsDropped,
			Iteration:      j.Progress.Iteration,
			Iterations:     j.Progress.Iterations,
			KlDivergence:   finiteOrNil(j.Progress.KLDivergence),
			ElapsedSeconds: j.Progress.ElapsedSeconds,
			VectorsMatched: positiveOrNil(j.Progress.VectorsMatched),
			VectorsIgnored: positiveOrNil(j.Progress.VectorsIgnored),
		},
		Links: openapi.JobLinks{
			Self:   "/v1/jobs/" + j.ID,
			Result: "/v1/jobs/" + j.ID + "/result",
			Events: "/v1/jobs/" + j.ID + "/events",
		},
	}
	if j.HasAtlas {
		l := "/v1/jobs/" + j.ID + "/atlas"
		out.Links.Atlas = &l
	}
	if j.Status == jobs.StatusSucceeded && j.HasResult {
		l := "/v1/jobs/" + j.ID + "/map.png"
		out.Links.Map = &l
	}
	if j.Attempts > 0 {
		a := j.Attempts
		out.Attempts = &a
	}
	if len(j.History) > 0 {
		h := make([]openapi.JobEvent, 0, len(j.History))
		for _, e := range j.History {
			ev := openapi.JobEvent{At: e.At, Event: e.Event}
			if e.Attempt > 0 {
				a := e.Attempt
				ev.Attempt = &a
			}
			if e.Detail != "" {
				d := e.Detail
				ev.Detail = &d
			}
			h = append(h, ev)
		}
		out.History = &h
	}
	if j.Error != nil {
		out.Error = &openapi.JobError{Code: openapi.JobErrorCode(j.Error.Code), Message: j.Error.Message}
	}
	if sh := j.Shards; sh != nil {
		done := make([]openapi.ShardDone, len(sh.Done))
		for k, d := range sh.Done {
			done[k] = openapi.ShardDone{Shard: d.Shard, Worker: d.Worker, Loaded: d.Loaded, Failed: d.Failed}
		}
		out.Shards = &openapi.JobShards{Size: sh.Size, Count: sh.Count, Done: done}
	}
	return out
}

func finiteOrNil(v *float64) *float64 {
	if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
		return nil
	}
	return v
}

func toAPIFailures(f []jobs.Failure) []openapi.Failure {
	out := make([]openapi.Failure, 0, len(f))
	for _, x := range f {
		out = append(out, openapi.Failure{Row: x.Row, Id: x.ID, Url: x.URL, Error: x.Error})
	}
	return out
}

// GetDemo says where the demo catalogue of `serve --demo` is.
func (s *Server) GetDemo(c echo.Context) error {
	if s.cfg.Demo == nil {
		return newProblem(http.StatusNotFound, "not-found", "Not found",
			"this server has no demo catalogue; start it with `tsnemap serve --demo` for one")
	}
	return c.JSON(http.StatusOK, s.cfg.Demo)
}
