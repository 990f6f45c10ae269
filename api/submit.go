package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
	"github.com/tsnemap/tsnemap/openapi"
)

func (s *Server) SubmitJob(c echo.Context) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return echo.ErrStatusRequestEntityTooLarge
		}
		return fmt.Errorf("read request body: %w", err)
	}
	// The spec's validator has already rejected unknown fields; decoding
	// strictly again keeps that true even if the spec is loosened.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var in openapi.JobRequest
	if err := dec.Decode(&in); err != nil {
		return decodeProblem(err)
	}
	if dec.More() {
		return fieldProblem(http.StatusBadRequest, "body", "must hold one JSON object and nothing after it")
	}
	req, p := s.normalize(in)
	if p != nil {
		return p
	}
	ctx := c.Request().Context()
	if p := s.checkBase(ctx, in, &req); p != nil {
		return p
	}
	if s.cfg.URLs != nil {
		if err := s.cfg.URLs.ValidateURL(ctx, req.DatasetURL); err != nil {
			return fieldProblem(http.StatusUnprocessableEntity, "dataset_url",
				"the server may not fetch this URL: "+err.Error()+"; use a public http(s) address")
		}
		if req.FeaturesURL != "" {
			if err := s.cfg.URLs.ValidateURL(ctx, req.FeaturesURL); err != nil {
				return fieldProblem(http.StatusUnprocessableEntity, "features_url",
					"the server may not fetch this URL ("+err.Error()+"); use a public http(s) address")
			}
		}
		if req.ImageURLTemplate != "" {
			probe := strings.ReplaceAll(req.ImageURLTemplate, "{id}", "1")
			if err := s.cfg.URLs.ValidateURL(ctx, probe); err != nil {
				return fieldProblem(http.StatusUnprocessableEntity, "image_url_template",
					"the server may not fetch images from this address: "+err.Error()+"; use a public http(s) address")
			}
		}
	}
	if s.cfg.MaxActiveJobs > 0 {
		unlock := s.lockQuota(owner(c))
		defer unlock()
		n, err := s.cfg.Jobs.ActiveJobs(ctx, owner(c))
		if err != nil {
			return storeProblem(err)
		}
		if n >= s.cfg.MaxActiveJobs {
			return tooMany(c, 10*time.Second, fmt.Sprintf("%d jobs are queued or running for this key, the most allowed (--max-active-jobs); wait until one finishes", n))
		}
	}
	req.Owner = owner(c)
	job, err := s.cfg.Jobs.Submit(ctx, req)
	if err != nil {
		s.log.Warn("submit refused: job store", "err", err)
		return storeProblem(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/jobs/"+job.ID)
	return c.JSON(http.StatusAccepted, toAPI(job))
}

// lockQuota holds the quota lock of one owner until the returned function
// is called.
func (s *Server) lockQuota(owner string) func() {
	s.quotaMu.Lock()
	if s.quotaLock == nil {
		s.quotaLock = map[string]*sync.Mutex{}
	}
	m, ok := s.quotaLock[owner]
	if !ok {
		m = &sync.Mutex{}
		s.quotaLock[owner] = m
	}
	s.quotaMu.Unlock()
	m.Lock()
	return m.Unlock
}

// storeProblem is the answer when the job store fails a write: 503, with
// the reason when the store is out of space.
func storeProblem(err error) *problem {
	if errors.Is(err, jobs.ErrStoreFull) {
		return newProblem(http.StatusServiceUnavailable, "store-full", "Job store out of space",
			"the job store (NATS JetStream under the server's data directory) has no room: its disk is full or read-only, or its storage limit is reached; nothing was queued. Try again once an operator has freed space.")
	}
	return newProblem(http.StatusServiceUnavailable, "unavailable", "Job store unavailable",
		"the job could not be queued; try again shortly")
}

func decodeProblem(err error) *problem {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fieldProblem(http.StatusBadRequest, orBody(te.Field), fmt.Sprintf("must be a %s, not %s", te.Type, te.Value))
	case errors.As(err, &se):
		return fieldProblem(http.StatusBadRequest, "body", "is not valid JSON: "+se.Error())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fieldProblem(http.StatusBadRequest, name, "unknown field; check its spelling against the JobRequest schema")
	case errors.Is(err, io.EOF):
		return fieldProblem(http.StatusBadRequest, "body", "is empty; send a JobRequest JSON object")
	}
	return fieldProblem(http.StatusBadRequest, "body", err.Error())
}

// normalize checks what the schema cannot say and fills in the defaults
// of the contract.
func (s *Server) normalize(in openapi.JobRequest) (jobs.Request, *problem) {
	r := jobs.DefaultRequest()
	r.DatasetURL = in.DatasetUrl
	r.TimeoutSeconds = int(s.cfg.MaxTimeout / time.Second)
	var fields []openapi.FieldProblem
	bad := func(field, msg string) { fields = append(fields, openapi.FieldProblem{Field: field, Message: msg}) }

	if _, err := loader.ParseURL(in.DatasetUrl); err != nil {
		bad("dataset_url", err.Error())
	}
	if in.ImageUrlTemplate != nil {
		r.ImageURLTemplate = *in.ImageUrlTemplate
		if !strings.Contains(r.ImageURLTemplate, "{id}") {
			bad("image_url_template", "must contain {id}, where each row's id goes, e.g. https://host/images/{id}.jpg")
		} else if _, err := loader.ParseURL(strings.ReplaceAll(r.ImageURLTemplate, "{id}", "1")); err != nil {
			bad("image_url_template", "with {id} as 1: "+err.Error())
		}
	}
	if in.ImageUrlColumn != nil {
		r.ImageURLColumn = *in.ImageUrlColumn
	}
	if r.ImageURLTemplate != "" && r.ImageURLColumn != "" {
		bad("image_url_column", "give image_url_template or image_url_column, not both")
	}
	r.FeaturesURL, r.FeaturesColumn, r.Metric = normalizeFeatures(in, bad)
	if in.BaseJobId != nil {
		r.BaseJobID = *in.BaseJobId
	}
	if in.FollowIntervalSeconds != nil {
		r.FollowIntervalSeconds = *in.FollowIntervalSeconds
		minimum := s.cfg.MinFollowInterval
		if minimum <= 0 {
			minimum = time.Minute
		}
		switch {
		case time.Duration(r.FollowIntervalSeconds)*time.Second < minimum:
			bad("follow_interval_seconds", fmt.Sprintf("must be at least %d (this server's --min-follow-interval)", int(minimum.Seconds())))
		case r.FeaturesURL != "":
			bad("follow_interval_seconds", "a features_url job cannot follow its table; additions are made of images")
		}
	}
	if r.ImageURLTemplate == "" && r.ImageURLColumn == "" && r.FeaturesURL == "" {
		bad("image_url_template", "give image_url_template (with {id}) or image_url_column, so the server knows where each row's image is (or features_url, to map vectors without images)")
	}
	if in.IdColumn != nil {
		r.IDColumn = *in.IdColumn
	}
	if in.Limit != nil {
		r.Limit = *in.Limit
		if s.cfg.MaxImages > 0 && r.Limit > s.cfg.MaxImages {
			bad("limit", fmt.Sprintf("must be at most %d, this server's cap on images per job (--max-images)", s.cfg.MaxImages))
		}
	}
	if in.ImageSize != nil {
		r.ImageSize = jobs.ImageSize{Width: in.ImageSize.Width, Height: in.ImageSize.Height}
	}
	if in.Method != nil {
		r.Method = string(*in.Method)
	}
	if in.Dimensions != nil {
		r.Dimensions = int(*in.Dimensions)
	}
	if in.Perplexity != nil {
		r.Perplexity = *in.Perplexity
	}
	if in.Iterations != nil {
		r.Iterations = *in.Iterations
	}
	if in.EarlyExaggeration != nil {
		r.EarlyExaggeration = *in.EarlyExaggeration
	}
	if in.ExaggerationIterations != nil {
		r.ExaggerationIterations = *in.ExaggerationIterations
	}
	if in.LearningRate != nil {
		if v, err := in.LearningRate.AsLearningRate0(); err == nil {
			if !(v > 0) || math.IsInf(v, 0) {
				bad("learning_rate", "must be a number > 0 or \"auto\"")
			}
			r.LearningRate = jobs.Rate(v)
		} else if v, err := in.LearningRate.AsLearningRate1(); err != nil || v != openapi.LearningRate1Auto {
			bad("learning_rate", "must be a number > 0 or \"auto\"")
		}
	}
	if in.Init != nil {
		r.Init = string(*in.Init)
	}
	if in.Seed != nil {
		r.Seed = *in.Seed
	}
	if in.Backend != nil {
		r.Backend = string(*in.Backend)
	}
	if in.TimeoutSeconds != nil {
		// The server's maximum caps every job, so one request cannot hold a
		// worker for longer than the operator allows.
		r.TimeoutSeconds = min(*in.TimeoutSeconds, r.TimeoutSeconds)
	}
	if in.Grid != nil {
		r.Grid = *in.Grid
		if r.Grid && r.Dimensions != 2 {
			bad("grid", "a grid layout is made of 2-D maps only; send dimensions 2 or leave grid out")
		}
	}
	if in.ShardSize != nil {
		// The spec bounds it (10..100,000); the validator answers first.
		r.ShardSize = *in.ShardSize
	}
	if len(fields) > 0 {
		return r, badRequest(http.StatusBadRequest, fields)
	}
	if r.Backend == "gpu" && !s.cfg.GPU {
		return r, fieldProblem(http.StatusUnprocessableEntity, "backend",
			"this server has no GPU (it runs on "+s.cfg.Backend+"); ask for \"auto\" or \"cpu\"")
	}
	return r, nil
}

func badRequest(status int, fields []openapi.FieldProblem) *problem {
	var parts []string
	for _, f := range fields {
		parts = append(parts, f.Field+": "+f.Message)
	}
	return newProblem(status, "invalid-request", "Invalid request", strings.Join(parts, "; "), fields...)
}
