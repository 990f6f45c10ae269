package api

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
)

// loaderPolicy is the command's URL policy: the real loader's guard.
type loaderPolicy struct{ l *loader.Loader }

func (p loaderPolicy) ValidateURL(ctx context.Context, raw string) error {
	return p.l.ValidateURL(ctx, raw)
}

// TestMessagesSayWhatToDo: refusals at submit say, in words, what to write
// or which setting lifts them.
func TestMessagesSayWhatToDo(t *testing.T) {
	// Every name resolves to a public address: no DNS in tests.
	public := func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
	}
	l, err := loader.New(loader.Config{LookupIP: public})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e := newEnvWith(t, jobs.EmbeddedConfig{}, func(c *Config) { c.URLs = loaderPolicy{l} })
	for _, tc := range []struct {
		name, body string
		status     int
		field      string
		says       []string
	}{
		{"no scheme", `{"dataset_url":"example.org/data.tab","image_url_column":"u"}`, 400, "dataset_url",
			[]string{"has no scheme", "https://example.org/data.tab"}},
		{"host and port, no scheme", `{"dataset_url":"example.org:8080/data.tab","image_url_column":"u"}`, 400, "dataset_url",
			[]string{"has no scheme"}},
		{"unsupported scheme", `{"dataset_url":"ftp://example.org/data.tab","image_url_column":"u"}`, 400, "dataset_url",
			[]string{`scheme \"ftp\"`, "only http and https"}},
		{"template without {id}", `{"dataset_url":"https://example.org/d.tab","image_url_template":"https://example.org/x.jpg"}`, 400, "image_url_template",
			[]string{"must contain {id}"}},
		{"loopback dataset", `{"dataset_url":"http://127.0.0.1:9/data.tab","image_url_column":"u"}`, 422, "dataset_url",
			[]string{"loopback", "--allow-private-networks", "TSNEMAP_ALLOW_PRIVATE_NETWORKS"}},
		{"private images", `{"dataset_url":"https://example.org/d.tab","image_url_template":"http://10.0.0.1/{id}.jpg"}`, 422, "image_url_template",
			[]string{"private", "--allow-private-networks"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, b := e.do("POST", "/v1/jobs", tc.body)
			if res.StatusCode != tc.status || !strings.Contains(string(b), `"field":"`+tc.field+`"`) {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			for _, want := range tc.says {
				if !strings.Contains(string(b), want) {
					t.Errorf("%s does not say %q", b, want)
				}
			}
			if strings.Contains(string(b), "regular expression") || strings.Contains(string(b), "first path segment") {
				t.Errorf("not in words: %s", b)
			}
		})
	}
}
