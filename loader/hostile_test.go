package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/color"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// Hostile and outsized inputs: each must end within a bound, in bounded
// memory, with an error that says what went wrong. Memory is measured with
// runtime.MemStats (heap in use after the call, and bytes allocated by it).

type memProbe struct{ before runtime.MemStats }

func startMem() *memProbe {
	p := &memProbe{}
	runtime.GC()
	runtime.ReadMemStats(&p.before)
	return p
}

// report returns the bytes allocated since start and the live heap now
// (after a GC), less the live heap at start.
func (p *memProbe) report() (allocated, live int64) {
	var now runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&now)
	return int64(now.TotalAlloc - p.before.TotalAlloc), int64(now.HeapAlloc) - int64(p.before.HeapAlloc)
}

const mib = 1 << 20

// TestSlowDripServer: a server that sends its table, or an image, one byte
// at a time, slowly, never finishing. The request timeout bounds each
// attempt (headers and body alike), so the table fails as unreachable with
// "timeout" and the image costs its row only.
func TestSlowDripServer(t *testing.T) {
	drip := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/tab-separated-values")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("id\n"))
		for i := 0; ; i++ {
			if _, err := w.Write([]byte{byte('0' + i%10)}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}))
	l := newTestLoader(t, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	t0 := time.Now()
	_, err := l.FetchTable(ctxT(t), drip.URL+"/data.tab", TableOptions{ImageURLTemplate: "http://h.example/{id}"})
	took := time.Since(t0)
	if !errors.Is(err, ErrDatasetUnreachable) || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("drip table: %v", err)
	}
	// 3 attempts of 300 ms plus short backoffs.
	if took > 3*time.Second {
		t.Errorf("drip table took %v", took)
	}
	t.Logf("drip table: %v after %v", err, took.Round(time.Millisecond))

	png := encPNG(t, halves(8, 8, color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 0, 255, 255}))
	okSrv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(png) }))
	rows := []Row{{ID: "drip", ImageURL: drip.URL + "/drip.png"}, {ID: "ok", ImageURL: okSrv.URL + "/ok.png"}}
	t0 = time.Now()
	im, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: 8, Height: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if im.Len() != 1 || len(im.Failures) != 1 || !strings.Contains(im.Failures[0].Reason, "timeout") {
		t.Errorf("drip image: loaded %d, failures %+v", im.Len(), im.Failures)
	}
	if took := time.Since(t0); took > 3*time.Second {
		t.Errorf("drip image took %v", took)
	}
}

// TestMillionRowTable reads a table of 1,000,000 rows (the default cap)
// and refuses one row more, naming the limit.
func TestMillionRowTable(t *testing.T) {
	if testing.Short() || testkit.Race {
		t.Skip("builds a 1,000,000-row table and bounds its memory; skipped with -short and -race")
	}
	var b bytes.Buffer
	b.WriteString("id\ttitle\n")
	for i := 0; i < 1_000_000; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteString("\tpainting\n")
	}
	body := b.Bytes()
	over := append(append([]byte(nil), body...), "1000000\tone too many\n"...)
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/over.tab" {
			_, _ = w.Write(over)
			return
		}
		_, _ = w.Write(body)
	}))
	l := newTestLoader(t, nil)
	mem := startMem()
	t0 := time.Now()
	tab, err := l.FetchTable(ctxT(t), srv.URL+"/data.tab", TableOptions{ImageURLTemplate: "http://h.example/{id}.jpg"})
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Rows) != 1_000_000 || tab.Rows[999_999].ImageURL != "http://h.example/999999.jpg" {
		t.Fatalf("%d rows", len(tab.Rows))
	}
	alloc, live := mem.report()
	runtime.KeepAlive(tab)
	t.Logf("1,000,000 rows (%.1f MB): %v, %d MB allocated, %d MB live holding the table",
		float64(len(body))/mib, took.Round(time.Millisecond), alloc/mib, live/mib)
	// About 200 bytes a row held (id, values, URL); generous bounds that a
	// quadratic or leaking parser would break.
	if live > 600*mib || alloc > 2000*mib || took > 60*time.Second {
		t.Errorf("1,000,000 rows: %d MB live, %d MB allocated, %v", live/mib, alloc/mib, took)
	}
	tab = nil
	_, err = l.FetchTable(ctxT(t), srv.URL+"/over.tab", TableOptions{ImageURLTemplate: "http://h.example/{id}.jpg"})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1000000") && !strings.Contains(err.Error(), "1,000,000") {
		t.Errorf("1,000,001 rows: %v", err)
	}
	t.Logf("1,000,001 rows: %v", err)
}

// TestHugeTable: a 200 MB table against the 100 MB cap, announced by
// Content-Length (refused before reading) or streamed without it (reading
// stops at the cap). Memory stays near the cap, not the body.
func TestHugeTable(t *testing.T) {
	if testing.Short() || testkit.Race {
		t.Skip("streams 200 MB and bounds its memory; skipped with -short and -race")
	}
	const size = 200 * mib
	chunk := bytes.Repeat([]byte("123456\tsome title\n"), 4096)
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/announced.tab" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		_, _ = w.Write([]byte("id\ttitle\n"))
		for n := int64(0); n < size-int64(len(chunk)); n += int64(len(chunk)) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	l := newTestLoader(t, func(c *Config) { c.RequestTimeout = 60 * time.Second })
	for _, path := range []string{"/announced.tab", "/streamed.tab"} {
		mem := startMem()
		t0 := time.Now()
		_, err := l.FetchTable(ctxT(t), srv.URL+path, TableOptions{ImageURLTemplate: "http://h.example/{id}"})
		took := time.Since(t0)
		alloc, _ := mem.report()
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "100") {
			t.Errorf("%s: %v", path, err)
		}
		t.Logf("200 MB table %s: %v after %v, %d MB allocated", path, err, took.Round(time.Millisecond), alloc/mib)
		// Streamed: a buffer growing to the cap (doubling: < 3× the cap).
		if alloc > 320*mib || took > 60*time.Second {
			t.Errorf("%s: %d MB allocated, %v", path, alloc/mib, took)
		}
	}
}

// TestFiftyThousandHosts loads one image from each of 50,000 host names
// (all resolving to one loopback server, so each is its own connection
// pool): time and memory stay bounded, idle connections are capped.
func TestFiftyThousandHosts(t *testing.T) {
	if testing.Short() || testkit.Race {
		t.Skip("50,000 downloads in bounded time; skipped with -short and -race")
	}
	n := 50_000
	png := encPNG(t, halves(8, 8, color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 0, 255, 255}))
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(png) }))
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	loop := netip.MustParseAddr("127.0.0.1")
	l := newTestLoader(t, func(c *Config) {
		c.LookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			if strings.HasSuffix(host, ".hosts.test") {
				return []netip.Addr{loop}, nil
			}
			return nil, fmt.Errorf("no such host %s", host)
		}
	})
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{Index: i, ID: strconv.Itoa(i), ImageURL: fmt.Sprintf("http://h%05d.hosts.test:%s/img.png", i, port)}
	}
	mem := startMem()
	t0 := time.Now()
	im, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: 8, Height: 8}, nil)
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	alloc, live := mem.report()
	if im.Len() != n || len(im.Failures) != 0 {
		t.Errorf("loaded %d of %d, %d failures (first %+v)", im.Len(), n, len(im.Failures), im.Failures[:min(1, len(im.Failures))])
	}
	t.Logf("%d hosts: %v (%.0f images/s), %d MB allocated, %d MB live after (images %d KB)",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), alloc/mib, live/mib, len(im.Pix)>>10)
	if live > 200*mib || took > 3*time.Minute {
		t.Errorf("%d hosts: %d MB live, %v", n, live/mib, took)
	}
}
