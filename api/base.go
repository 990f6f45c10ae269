package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

// checkBase checks an addition's base_job_id at submit, so that a base
// that cannot be added to is an answer now and not a failure later: 404
// when the job does not exist (never, deleted or expired), 409 when it has
// not succeeded or has no addition state, 400 naming the field when the
// request's image_size, metric, method or dimensions differ from the
// base's. A field the request leaves out takes the base's value.
func (s *Server) checkBase(ctx context.Context, in openapi.JobRequest, req *jobs.Request) *problem {
	if req.BaseJobID == "" {
		return nil
	}
	if req.FeaturesURL != "" {
		return fieldProblem(http.StatusBadRequest, "base_job_id", "additions are made of images; a features_url job cannot name a base")
	}
	base, err := s.cfg.Jobs.BaseOf(ctx, req.BaseJobID)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return newProblem(http.StatusNotFound, "base-not-found", "Base job not found",
			fmt.Sprintf("base_job_id: there is no job %q (it was never made, was deleted or has expired)", req.BaseJobID))
	case errors.Is(err, jobs.ErrConflict):
		return newProblem(http.StatusConflict, "base-not-addable", "Base job cannot be added to",
			"base_job_id: "+err.Error())
	case err != nil:
		return storeProblem(err)
	}
	b := base.Request
	if b.Metric == "" {
		b.Metric = "euclidean"
	}
	var fields []openapi.FieldProblem
	check := func(field string, given bool, same bool, want any, take func()) {
		switch {
		case !given:
			take()
		case !same:
			fields = append(fields, openapi.FieldProblem{Field: field,
				Message: fmt.Sprintf("must be the base job's (%v) in an addition; omit it to take the base's", want)})
		}
	}
	check("image_size", in.ImageSize != nil, req.ImageSize == b.ImageSize, fmt.Sprintf("%d×%d", b.ImageSize.Width, b.ImageSize.Height), func() { req.ImageSize = b.ImageSize })
	check("metric", in.Metric != nil, req.Metric == b.Metric, b.Metric, func() { req.Metric = b.Metric })
	check("method", in.Method != nil, req.Method == b.Method, b.Method, func() { req.Method = b.Method })
	check("dimensions", in.Dimensions != nil, req.Dimensions == b.Dimensions, b.Dimensions, func() { req.Dimensions = b.Dimensions })
	if len(fields) > 0 {
		return badRequest(http.StatusBadRequest, fields)
	}
	return nil
}
