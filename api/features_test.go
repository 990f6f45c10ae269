package api

import (
	"encoding/json"
	"testing"

	"github.com/tsnemap/tsnemap/openapi"
)

// TestFeaturesFields: features_url makes the images optional, metric is
// echoed (euclidean by default), and each mistake is a problem naming its
// field.
func TestFeaturesFields(t *testing.T) {
	e := newEnv(t)
	j := e.submit(`{"dataset_url":"https://a.example/d","features_url":"https://a.example/v.parquet","features_column":"clip","metric":"cosine"}`)
	if r := j.Request; r.FeaturesUrl == nil || *r.FeaturesUrl != "https://a.example/v.parquet" || r.FeaturesColumn == nil || *r.FeaturesColumn != "clip" || r.Metric != "cosine" || r.ImageUrlTemplate != nil {
		t.Errorf("request = %+v", r)
	}
	if j = e.submit(`{"dataset_url":"https://a.example/d","image_url_column":"u"}`); j.Request.Metric != "euclidean" || j.Request.FeaturesUrl != nil {
		t.Errorf("default request = %+v", j.Request)
	}
	for _, c := range []struct {
		name, body string
		status     int
		field      string
	}{
		{"ftp features", `{"dataset_url":"https://a.example/d","features_url":"ftp://a.example/v.npy"}`, 400, "features_url"},
		{"column without features", `{"dataset_url":"https://a.example/d","image_url_column":"u","features_column":"clip"}`, 400, "features_column"},
		{"bad metric", `{"dataset_url":"https://a.example/d","features_url":"https://a.example/v.npy","metric":"manhattan"}`, 400, "metric"},
		{"private features", `{"dataset_url":"https://a.example/d","features_url":"http://169.254.169.254/v.npy"}`, 422, "features_url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			res, b := e.do("POST", "/v1/jobs", c.body)
			var p openapi.Problem
			if res.StatusCode != c.status || json.Unmarshal(b, &p) != nil || p.Errors == nil {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, c.status, b)
			}
			for _, f := range *p.Errors {
				if f.Field == c.field {
					return
				}
			}
			t.Errorf("no error names %q: %s", c.field, b)
		})
	}
}
