package jobs

import "github.com/tsnemap/tsnemap/embed"

// DefaultRequest is the request every job starts from: the contract's
// defaults (JobRequest in openapi/openapi.yaml; a test checks they agree),
// with the engine's own taken from embed.DefaultOptions, so each default
// is written once. DatasetURL, the image source and TimeoutSeconds (the
// server's maximum) have no default here.
func DefaultRequest() Request {
	o := embed.DefaultOptions()
	return Request{
		IDColumn:               "id",
		Metric:                 string(o.Metric),
		ImageSize:              ImageSize{Width: 100, Height: 100},
		Method:                 string(o.Method),
		Dimensions:             o.Dimensions,
		Perplexity:             o.Perplexity,
		Iterations:             o.Iterations,
		EarlyExaggeration:      o.EarlyExaggeration,
		ExaggerationIterations: o.ExaggerationIterations,
		LearningRate:           Rate(o.LearningRate),
		Init:                   string(o.Init),
		Seed:                   o.Seed,
		Backend:                "auto",
	}
}
