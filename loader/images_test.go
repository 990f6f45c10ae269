package loader

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bombPNG is a valid PNG signature and header declaring w×h pixels, with no
// image data: decoding it would allocate w·h·4 bytes.
func bombPNG(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
		c := append([]byte(typ), data...)
		b.Write(c)
		_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(c))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

type imageCase struct {
	path   string
	body   []byte
	ctype  string
	reason string // "" = must load
	// check, for a loaded image: the colour of the left and right halves
	left, right color.NRGBA
	tol         int
}

func TestLoadImagesFormatsAndFailures(t *testing.T) {
	pat := halves(64, 48, red, blue)
	jpg := encJPEG(t, pat, 95)

	// PNG with alpha: left half opaque red, right half fully transparent
	// (must become white), 16-bit variant, paletted GIF, grayscale JPEG.
	alpha := halves(64, 48, red, color.NRGBA{0, 0, 255, 0})
	png16 := image.NewNRGBA64(pat.Bounds())
	for y := 0; y < 48; y++ {
		for x := 0; x < 64; x++ {
			png16.Set(x, y, pat.At(x, y))
		}
	}
	gray := image.NewGray(pat.Bounds())
	for y := 0; y < 48; y++ {
		for x := 0; x < 64; x++ {
			if x < 32 {
				gray.SetGray(x, y, color.Gray{Y: 30})
			} else {
				gray.SetGray(x, y, color.Gray{Y: 220})
			}
		}
	}
	// A 48×64 picture stored sideways with EXIF orientation 6 (rotate 90°
	// clockwise to display): stored top half green, bottom half red, so
	// displayed left half red, right half green.
	side := image.NewNRGBA(image.Rect(0, 0, 48, 64))
	for y := 0; y < 64; y++ {
		for x := 0; x < 48; x++ {
			if y < 32 {
				side.Set(x, y, green)
			} else {
				side.Set(x, y, red)
			}
		}
	}
	white := color.NRGBA{255, 255, 255, 255}
	dark := color.NRGBA{30, 30, 30, 255}
	light := color.NRGBA{220, 220, 220, 255}

	var flaky atomic.Int64
	cases := []imageCase{
		{path: "/good.jpg", body: jpg, left: red, right: blue, tol: 40},
		{path: "/alpha.png", body: encPNG(t, alpha), left: red, right: white, tol: 2},
		{path: "/deep.png", body: encPNG(t, png16), left: red, right: blue, tol: 2},
		{path: "/pal.gif", body: encGIF(t, pat), left: red, right: blue, tol: 2},
		{path: "/gray.jpg", body: encJPEG(t, gray, 95), left: dark, right: light, tol: 6},
		{path: "/img.bmp", body: encBMP(t, pat), left: red, right: blue, tol: 2},
		{path: "/img.tiff", body: encTIFF(t, pat), left: red, right: blue, tol: 2},
		{path: "/lossless.webp", body: readTestdata(t, "pattern-lossless.webp"), left: red, right: blue, tol: 2},
		{path: "/lossy.webp", body: readTestdata(t, "pattern-lossy.webp"), left: red, right: blue, tol: 40},
		{path: "/progressive.jpg", body: readTestdata(t, "progressive.jpg"), left: red, right: blue, tol: 40},
		{path: "/cmyk.jpg", body: readTestdata(t, "cmyk.jpg"), left: red, right: blue, tol: 40},
		{path: "/rotated.jpg", body: withExifOrientation(encJPEG(t, side, 95), 6), left: red, right: green, tol: 40},
		{path: "/lying-type", body: encPNG(t, pat), ctype: "text/plain", left: red, right: blue, tol: 2},
		{path: "/flaky.jpg", left: red, right: blue, tol: 40}, // 500, then 200
		{path: "/missing.jpg", reason: "http 404"},
		{path: "/gone.jpg", reason: "http 410"},
		{path: "/always500.jpg", reason: "http 500 (after 3 attempts)"},
		{path: "/truncated.jpg", body: jpg[:len(jpg)/2], reason: "cannot decode jpeg"},
		{path: "/html.jpg", body: []byte("<!DOCTYPE html><html><body>Not found</body></html>"), ctype: "image/jpeg", reason: "not an image (text/html)"},
		{path: "/empty.jpg", body: []byte{}, ctype: "image/jpeg", reason: "not an image (empty response)"},
		{path: "/bomb.png", body: bombPNG(50000, 50000), reason: "image too large: 50000×50000 pixels exceeds 100 megapixels"},
		{path: "/huge.jpg", reason: "too large: more than 50 MB"},
		{path: "/huge-declared.jpg", reason: "too large: more than 50 MB"},
		{path: "/loop", reason: "too many redirects"},
		{path: "/redirected.jpg", left: red, right: blue, tol: 40},
	}
	byPath := map[string]*imageCase{}
	for i := range cases {
		byPath[cases[i].path] = &cases[i]
	}
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/flaky.jpg":
			if flaky.Add(1) == 1 {
				http.Error(w, "try again", http.StatusInternalServerError)
				return
			}
			_, _ = w.Write(jpg)
		case "/missing.jpg":
			http.NotFound(w, r)
		case "/gone.jpg":
			http.Error(w, "gone", http.StatusGone)
		case "/always500.jpg":
			http.Error(w, "broken", http.StatusInternalServerError)
		case "/huge.jpg":
			// 60 MB streamed without Content-Length: the cap must hold
			// while streaming.
			chunk := make([]byte, 1<<20)
			for i := 0; i < 60; i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "/huge-declared.jpg":
			w.Header().Set("Content-Length", "62914560")
			_, _ = w.Write(jpg) // refused from the header, before the body
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/redirected.jpg":
			http.Redirect(w, r, "/good.jpg", http.StatusMovedPermanently)
		default:
			c := byPath[r.URL.Path]
			if c == nil || c.body == nil {
				http.NotFound(w, r)
				return
			}
			if c.ctype != "" {
				w.Header().Set("Content-Type", c.ctype)
			}
			_, _ = w.Write(c.body)
		}
	}))
	l := newTestLoader(t, func(c *Config) { c.RequestTimeout = 20 * time.Second })
	rows := make([]Row, len(cases))
	for i, c := range cases {
		rows[i] = Row{Index: i, ID: strings.TrimPrefix(c.path, "/"), ImageURL: s.URL + c.path}
	}
	const W, H = 20, 10
	var calls atomic.Int64
	var last Progress
	var reported []Failure
	im, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: W, Height: H}, func(p Progress) {
		reported = append(reported, p.NewFailures...)
		calls.Add(1)
		last = p
	})
	if err != nil {
		t.Fatal(err)
	}
	failed := map[int]Failure{}
	for _, f := range im.Failures {
		failed[f.Row] = f
		if f.ID != rows[f.Row].ID || f.URL != rows[f.Row].ImageURL {
			t.Errorf("failure %+v does not match its row", f)
		}
	}
	k := 0
	for i, c := range cases {
		if c.reason != "" {
			f, ok := failed[i]
			if !ok {
				t.Errorf("%s loaded, want failure %q", c.path, c.reason)
				continue
			}
			if !strings.HasPrefix(f.Reason, c.reason) {
				t.Errorf("%s: reason %q, want %q", c.path, f.Reason, c.reason)
			}
			continue
		}
		if f, ok := failed[i]; ok {
			t.Errorf("%s failed: %s", c.path, f.Reason)
			continue
		}
		if im.Rows[k] != i {
			t.Fatalf("image %d belongs to row %d, want %d (row order)", k, im.Rows[k], i)
		}
		px := im.At(k)
		if l, r := pixel(px, W, 2, H/2), pixel(px, W, W-3, H/2); !near(l, c.left, c.tol) || !near(r, c.right, c.tol) {
			t.Errorf("%s: left %v right %v, want %v and %v", c.path, l, r, c.left, c.right)
		}
		k++
	}
	if k != im.Len() || len(im.Pix) != k*W*H*3 {
		t.Errorf("%d images, %d bytes of pixels; want %d", im.Len(), len(im.Pix), k)
	}
	if last.Total != int64(len(cases)) || last.Loaded != int64(im.Len()) || last.Failed != int64(len(im.Failures)) || last.Bytes == 0 {
		t.Errorf("final progress %+v; loaded %d failed %d", last, im.Len(), len(im.Failures))
	}
	if st := l.Stats(); st.Total != last.Total || st.Loaded != last.Loaded || st.Failed != last.Failed || st.Bytes != last.Bytes {
		t.Errorf("Stats %+v, want %+v", st, last)
	}
	// The failures reported while loading are exactly the final ones.
	slices.SortFunc(reported, func(a, b Failure) int { return a.Row - b.Row })
	if !slices.Equal(reported, im.Failures) {
		t.Errorf("failures reported during loading %+v, want %+v", reported, im.Failures)
	}
}

// TestLoadImagesTimeout: a server slower than the request timeout costs
// that row (after its retries), not the job.
func TestLoadImagesTimeout(t *testing.T) {
	jpg := encJPEG(t, halves(16, 16, red, blue), 90)
	var slowHits atomic.Int64
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow.jpg" {
			slowHits.Add(1)
			<-r.Context().Done() // never answers; the client's timeout ends it
			return
		}
		_, _ = w.Write(jpg)
	}))
	l := newTestLoader(t, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
	rows := []Row{{ID: "slow", ImageURL: s.URL + "/slow.jpg"}, {ID: "ok", ImageURL: s.URL + "/ok.jpg"}}
	im, err := l.LoadImages(ctxT(t), rows, ImageOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if im.Len() != 1 || im.Rows[0] != 1 || len(im.Failures) != 1 {
		t.Fatalf("loaded %v failures %v", im.Rows, im.Failures)
	}
	if want := "timeout after 200ms (after 3 attempts)"; im.Failures[0].Reason != want {
		t.Errorf("reason %q, want %q", im.Failures[0].Reason, want)
	}
	if n := slowHits.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

func TestLoadImagesNoImages(t *testing.T) {
	s := serve(t, http.NotFoundHandler())
	l := newTestLoader(t, nil)
	rows := []Row{{ID: "a", ImageURL: s.URL + "/a.jpg"}, {ID: "b", ImageURL: s.URL + "/b.jpg"}, {ID: "c"}}
	im, err := l.LoadImages(ctxT(t), rows, ImageOptions{}, nil)
	if !errors.Is(err, ErrNoImages) {
		t.Fatalf("got %v, want ErrNoImages", err)
	}
	if im == nil || len(im.Failures) != 3 || im.Failures[2].Reason != "no image URL" {
		t.Errorf("failures %+v", im)
	}
}

func TestLoadImagesOptions(t *testing.T) {
	l := newTestLoader(t, nil)
	for _, o := range []ImageOptions{{Width: 3, Height: 100}, {Width: 100, Height: 513}, {Width: -1, Height: 10}} {
		if _, err := l.LoadImages(ctxT(t), []Row{{ID: "x", ImageURL: "http://h/x"}}, o, nil); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	jpg := encJPEG(t, halves(16, 16, red, blue), 90)
	var n atomic.Int64
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write(jpg)
	}))
	// MaxRetryAfter caps the server's 1 s to 50 ms.
	l := newTestLoader(t, nil)
	im, err := l.LoadImages(ctxT(t), []Row{{ID: "a", ImageURL: s.URL + "/a"}}, ImageOptions{}, nil)
	if err != nil || im.Len() != 1 || n.Load() != 2 {
		t.Fatalf("err %v, loaded %v, requests %d", err, im, n.Load())
	}
}

// TestConcurrencyLimits holds every request until a limit is reached (the
// gate opens only then, so a loader that never reaches it fails on its
// request timeouts), and checks that no limit is ever exceeded.
func TestConcurrencyLimits(t *testing.T) {
	jpg := encJPEG(t, halves(16, 16, red, blue), 90)
	const perHost, global = 3, 5
	for _, nHosts := range []int{1, 3} {
		var (
			mu              sync.Mutex
			cur, hostMax    [3]int
			total, totalMax int
			gate            = make(chan struct{})
			gateOnce        sync.Once
		)
		handler := func(h int) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				cur[h]++
				total++
				hostMax[h] = max(hostMax[h], cur[h])
				totalMax = max(totalMax, total)
				if cur[h] == perHost || total == global {
					gateOnce.Do(func() { close(gate) })
				}
				mu.Unlock()
				select {
				case <-gate:
				case <-r.Context().Done():
				}
				_, _ = w.Write(jpg)
				mu.Lock()
				cur[h]--
				total--
				mu.Unlock()
			})
		}
		var urls []string
		for h := 0; h < nHosts; h++ {
			urls = append(urls, serve(t, handler(h)).URL)
		}
		var rows []Row
		for i := 0; i < 60; i++ {
			rows = append(rows, Row{ID: "x", ImageURL: urls[i%nHosts] + "/x.jpg"})
		}
		l := newTestLoader(t, func(c *Config) { c.MaxPerHost = perHost; c.MaxInFlight = global })
		im, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: 8, Height: 8}, nil)
		if err != nil || im.Len() != 60 {
			t.Fatalf("%d hosts: err %v, failures %v", nHosts, err, im.Failures)
		}
		for h := 0; h < nHosts; h++ {
			if hostMax[h] > perHost {
				t.Errorf("%d hosts: a host saw %d requests at once, limit %d", nHosts, hostMax[h], perHost)
			}
		}
		if totalMax > global {
			t.Errorf("%d hosts: %d requests at once, limit %d", nHosts, totalMax, global)
		}
		if nHosts == 1 && hostMax[0] != perHost {
			t.Errorf("one host: at most %d at once, want %d", hostMax[0], perHost)
		}
	}
}

// TestCancelStopsDownloads: after a cancel, LoadImages returns within a
// second and no new download starts. The server holds every request until
// the client goes away, and the loader may have four in flight: once four
// have arrived every slot is taken and nothing can free one but the
// cancel, so a fifth request at the server would be one sent after it.
func TestCancelStopsDownloads(t *testing.T) {
	const slots = 4
	var started atomic.Int64
	allIn := make(chan struct{})
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if started.Add(1) == slots {
			close(allIn)
		}
		<-r.Context().Done() // hang until the client goes away
	}))
	var rows []Row
	for i := 0; i < 500; i++ {
		rows = append(rows, Row{ID: "x", ImageURL: s.URL + "/x.jpg"})
	}
	l := newTestLoader(t, func(c *Config) { c.RequestTimeout = time.Minute; c.MaxInFlight = slots; c.MaxPerHost = slots })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := l.LoadImages(ctx, rows, ImageOptions{}, nil)
		done <- err
	}()
	<-allIn
	cancel()
	at := time.Now()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("LoadImages did not return after cancel")
	}
	if d := time.Since(at); d > time.Second {
		t.Errorf("LoadImages took %v to return after cancel", d)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	s.Close() // waits for every handler to end
	if n := started.Load(); n != slots {
		t.Errorf("server saw %d requests; %d were sent after the cancel", n, n-slots)
	}
}

func TestHTTP2Reused(t *testing.T) {
	jpg := encJPEG(t, halves(16, 16, red, blue), 90)
	var proto sync.Map
	s := httptestTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(r.Proto, true)
		_, _ = w.Write(jpg)
	}))
	l := newTestLoader(t, func(c *Config) { c.TLSConfig = s.Client().Transport.(*http.Transport).TLSClientConfig.Clone() })
	var rows []Row
	for i := 0; i < 20; i++ {
		rows = append(rows, Row{ID: "x", ImageURL: s.URL + "/x.jpg"})
	}
	if _, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: 8, Height: 8}, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := proto.Load("HTTP/2.0"); !ok {
		t.Error("no request came over HTTP/2")
	}
}
