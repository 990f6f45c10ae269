package web

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, srv *httptest.Server, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestPageAndAssets(t *testing.T) {
	h, err := New(Options{Demo: &Demo{DatasetURL: "http://127.0.0.42:1/data.tab", ImageURLTemplate: "http://127.0.0.42:1/images/{id}.png", Perplexity: 20}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	res, body := get(t, srv, "/")
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("/: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("CSP = %q", csp)
	}
	if res.Header.Get("Cache-Control") != "no-cache" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers = %v", res.Header)
	}
	// The demo is written into the page as JSON the script reads.
	m := regexp.MustCompile(`(?s)<script type="application/json" id="config">(.*?)</script>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no config in the page:\n%s", body)
	}
	var cfg struct {
		Demo *Demo `json:"demo"`
	}
	if err := json.Unmarshal([]byte(m[1]), &cfg); err != nil || cfg.Demo == nil || cfg.Demo.ImageURLTemplate != "http://127.0.0.42:1/images/{id}.png" {
		t.Errorf("config %q: %+v %v", m[1], cfg.Demo, err)
	}

	for path, ct := range map[string]string{
		"/static/app.js": "text/javascript; charset=utf-8", "/static/map.js": "text/javascript; charset=utf-8",
		"/static/api.js": "text/javascript; charset=utf-8", "/static/render.js": "text/javascript; charset=utf-8",
		"/static/raster.js": "text/javascript; charset=utf-8",
		"/static/style.css": "text/css; charset=utf-8",
	} {
		res, body := get(t, srv, path)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != ct || len(body) == 0 {
			t.Errorf("%s: %d %q", path, res.StatusCode, res.Header.Get("Content-Type"))
			continue
		}
		etag := res.Header.Get("ETag")
		if etag == "" || res.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: ETag %q, Cache-Control %q", path, etag, res.Header.Get("Cache-Control"))
			continue
		}
		if res, _ := get(t, srv, path, "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
			t.Errorf("%s with its ETag: %d, want 304", path, res.StatusCode)
		}
	}
	for _, path := range []string{"/static/nope.js", "/static/index.html", "/static/", "/elsewhere"} {
		if res, _ := get(t, srv, path); res.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", path, res.StatusCode)
		}
	}
	req, _ := http.NewRequest("POST", srv.URL+"/", strings.NewReader("x"))
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 405 {
		t.Errorf("POST /: %v %v", res, err)
	} else {
		res.Body.Close()
	}
}

func TestPageWithoutDemo(t *testing.T) {
	h, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if _, body := get(t, srv, "/"); !strings.Contains(body, `{"demo":null}`) {
		t.Errorf("config without a demo: %s", body)
	}
}

// The page must load nothing from elsewhere: no CDN, no remote module,
// stylesheet or font.
func TestNoNetworkFetchesButTheAPI(t *testing.T) {
	remote := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//|from\s+["'](https?:)?//|import\(\s*["'](https?:)?//`)
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		if loc := remote.FindIndex(b); loc != nil {
			t.Errorf("%s loads something from elsewhere: %q", p, b[loc[0]:min(len(b), loc[1]+40)])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
