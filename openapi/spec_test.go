package openapi

import (
	"encoding/json"
	"testing"
)

func TestSpecLoadsAndValidates(t *testing.T) {
	doc, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/result", "/v1/jobs/{id}/failures",
		"/v1/jobs/{id}/events", "/healthz", "/readyz", "/metrics", "/openapi.yaml", "/openapi.json"} {
		if doc.Paths.Find(p) == nil {
			t.Errorf("spec lacks path %s", p)
		}
	}
	b, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	if v["openapi"] != "3.0.3" {
		t.Errorf("openapi.json version = %v", v["openapi"])
	}
}
