package api

import (
	"net/url"

	"github.com/tsnemap/tsnemap/embed"
	"github.com/tsnemap/tsnemap/openapi"
)

// normalizeFeatures checks and returns the request's features_url,
// features_column and metric (default euclidean); bad records each
// problem by field.
func normalizeFeatures(in openapi.JobRequest, bad func(field, msg string)) (featuresURL, column, metric string) {
	metric = string(embed.MetricEuclidean)
	if in.FeaturesUrl != nil {
		featuresURL = *in.FeaturesUrl
		if u, err := url.Parse(featuresURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("features_url", "must be an absolute http(s) URL, such as https://example.org/clip.parquet")
		}
	}
	if in.FeaturesColumn != nil {
		column = *in.FeaturesColumn
		if featuresURL == "" {
			bad("features_column", "only means something with features_url")
		}
	}
	if in.Metric != nil {
		metric = string(*in.Metric)
		if m := embed.Metric(metric); m != embed.MetricEuclidean && m != embed.MetricCosine {
			bad("metric", "must be \"euclidean\" or \"cosine\"")
		}
	}
	return featuresURL, column, metric
}

// normalizedMetric is a stored request's metric as the API shows it: a
// job stored before metrics existed ran euclidean.
func normalizedMetric(m string) openapi.NormalizedJobRequestMetric {
	if m == "" {
		return openapi.NormalizedJobRequestMetricEuclidean
	}
	return openapi.NormalizedJobRequestMetric(m)
}

func positiveOrNil(n int) *int {
	if n <= 0 {
		return nil
	}
	return &n
}
