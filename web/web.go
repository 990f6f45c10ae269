// Package web is tsnemap's page: submit a catalogue, watch its job
// converge, explore the map. The files in static/ are plain HTML, CSS and
// JavaScript modules, embedded in the binary: no build step, no CDN, and
// nothing fetched at run time but the API of the server that served them.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// Demo names the demo catalogue the page offers to fill in (serve --demo).
type Demo struct {
	DatasetURL       string `json:"dataset_url"`
	ImageURLTemplate string `json:"image_url_template"`
	Perplexity       int    `json:"perplexity,omitempty"`
}

// Options configures the page.
type Options struct {
	// Demo, if set, adds a button that fills the form with it.
	Demo *Demo
}

// Handler serves the page at / and its assets under /static/.
type Handler struct {
	index  []byte
	assets map[string]asset
	built  time.Time
}

type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Content security policy: everything from this server only; images may
// also be blob: URLs (the atlas sheets, fetched with the API key) and
// data: URLs.
const csp = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// New builds the handler; the page's configuration is written into it.
func New(opts Options) (*Handler, error) {
	h := &Handler{assets: map[string]asset{}, built: time.Now()}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.assets["/"+p] = asset{body: b, contentType: contentType(p), etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: read embedded files: %w", err)
	}
	tmpl, err := template.ParseFS(files, "static/index.html")
	if err != nil {
		return nil, fmt.Errorf("web: parse index.html: %w", err)
	}
	cfg, err := json.Marshal(struct {
		Demo *Demo `json:"demo"`
	}{opts.Demo})
	if err != nil {
		return nil, fmt.Errorf("web: config: %w", err)
	}
	var b bytes.Buffer
	// The configuration is the text of a JSON script element: as is,
	// since json.Marshal escapes <, > and & (no "</script>" can appear).
	if err := tmpl.Execute(&b, struct{ Config template.JS }{template.JS(cfg)}); err != nil {
		return nil, fmt.Errorf("web: render index.html: %w", err)
	}
	h.index = b.Bytes()
	delete(h.assets, "/static/index.html")
	return h, nil
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	}
	return "application/octet-stream"
}

// ServeHTTP serves "/" (the page) and "/static/…" (its assets). Assets are
// revalidated by ETag on each load (no-cache), so a new binary's files are
// seen at once while an unchanged one costs a 304.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hd := w.Header()
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Cache-Control", "no-cache")
	if r.URL.Path == "/" || r.URL.Path == "/index.html" {
		hd.Set("Content-Type", "text/html; charset=utf-8")
		hd.Set("Content-Security-Policy", csp)
		hd.Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, "index.html", h.built, bytes.NewReader(h.index))
		return
	}
	a, ok := h.assets[r.URL.Path]
	if !ok || !strings.HasPrefix(r.URL.Path, "/static/") {
		http.NotFound(w, r)
		return
	}
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	http.ServeContent(w, r, path.Base(r.URL.Path), time.Time{}, bytes.NewReader(a.body))
}
