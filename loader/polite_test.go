package loader

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRequestsPerImageAtMostAttempts counts the requests one image costs
// its host when every answer fails, whatever the transport does beneath:
// Go's http.Transport sends an idempotent request again, on its own, when
// a reused keep-alive connection fails, which would multiply the loader's
// attempts. The pool is warmed with successful images first, so the failing
// requests go out on reused connections.
func TestRequestsPerImageAtMostAttempts(t *testing.T) {
	jpg := encJPEG(t, halves(16, 16, red, blue), 90)
	hits := map[string]*atomic.Int64{"/close": {}, "/reset": {}}
	var withBody atomic.Int64
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 || len(r.TransferEncoding) > 0 || r.Header.Get("Content-Length") != "" {
			withBody.Add(1) // a plain GET goes out: no body, no length, no chunking
		}
		if !strings.HasPrefix(r.URL.Path, "/warm") {
			hits[r.URL.Path].Add(1)
		}
		switch r.URL.Path {
		case "/close": // reads the request, closes without a word
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		case "/reset": // starts the body, then resets the connection
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			writeThenReset(conn, buf)
		default:
			_, _ = w.Write(jpg)
		}
	}))
	const attempts = 3
	for _, path := range []string{"/close", "/reset"} {
		t.Run(path, func(t *testing.T) {
			l := newTestLoader(t, func(c *Config) { c.MaxAttempts = attempts; c.MaxPerHost = 4 })
			var warm []Row
			for i := range 8 {
				warm = append(warm, Row{ID: fmt.Sprint(i), ImageURL: fmt.Sprintf("%s/warm%d", s.URL, i)})
			}
			if _, err := l.LoadImages(ctxT(t), warm, ImageOptions{}, nil); err != nil {
				t.Fatal(err)
			}
			_, err := l.LoadImages(ctxT(t), []Row{{ID: "x", ImageURL: s.URL + path}}, ImageOptions{}, nil)
			if err == nil {
				t.Fatal("the image loaded")
			}
			if n := hits[path].Swap(0); n != attempts {
				t.Errorf("%s: %d requests for one image, want %d (the configured attempts)", path, n, attempts)
			}
			if n := withBody.Load(); n > 0 {
				t.Errorf("%d GETs went out with a body, a length or chunked", n)
			}
		})
	}
}

// writeThenReset answers 200 with a promised 10,000-byte body, sends 100
// bytes of it, and closes with RST (linger 0).
func writeThenReset(conn net.Conn, buf *bufio.ReadWriter) {
	defer conn.Close()
	_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 10000\r\n\r\n")
	_, _ = buf.Write(make([]byte, 100))
	_ = buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}
