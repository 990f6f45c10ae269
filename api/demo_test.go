package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/openapi"
)

func TestDemoCatalogue(t *testing.T) {
	plain := newEnvWith(t, jobs.EmbeddedConfig{}, nil)
	if res, b := plain.do("GET", "/demo.json", ""); res.StatusCode != 404 || !strings.Contains(string(b), "--demo") {
		t.Errorf("without a demo: %d %s", res.StatusCode, b)
	}
	want := openapi.DemoCatalogue{DatasetUrl: "http://127.0.0.42:1/data.tab", ImageUrlTemplate: "http://127.0.0.42:1/images/{id}.png", Perplexity: 20}
	// Keys guard /v1, not the demo's address (as the page shows it too).
	e := keyed(t, func(c *Config) { c.Demo = &want })
	res, b := e.do("GET", "/demo.json", "")
	var got openapi.DemoCatalogue
	if res.StatusCode != 200 || json.Unmarshal(b, &got) != nil || got != want {
		t.Errorf("demo: %d %s", res.StatusCode, b)
	}
}
