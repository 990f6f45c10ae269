package loader

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/gif"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// newTestLoader is a Loader for loopback test servers: guard open, short
// timeouts and backoff so that failure paths run fast.
func newTestLoader(t testing.TB, mod func(*Config)) *Loader {
	t.Helper()
	cfg := Config{
		AllowPrivateNetworks: true,
		RequestTimeout:       2 * time.Second,
		RetryBaseDelay:       5 * time.Millisecond,
		MaxRetryAfter:        50 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// serve starts an httptest server on 127.0.0.1.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// serveOn starts an httptest server on another loopback address, so that a
// test can open the guard for it alone (Config.AllowedNetworks).
func serveOn(t testing.TB, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func prefix(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }

// halves is a w×h picture, left half c1 and right half c2: asymmetric, so
// that orientation and channel mistakes show.
func halves(w, h int, c1, c2 color.Color) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if x < w/2 {
				img.Set(x, y, c1)
			} else {
				img.Set(x, y, c2)
			}
		}
	}
	return img
}

var (
	red   = color.NRGBA{255, 0, 0, 255}
	blue  = color.NRGBA{0, 0, 255, 255}
	green = color.NRGBA{0, 200, 0, 255}
)

// encJPEG and encPNG encode test images (testkit's, shared with other
// packages' tests).
var encJPEG, encPNG = testkit.EncodeJPEG, testkit.EncodePNG

func encGIF(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := gif.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encBMP(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := bmp.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encTIFF(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := tiff.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withExifOrientation inserts an APP1 Exif segment with the given
// orientation right after the SOI of a JPEG.
func withExifOrientation(jpg []byte, orient uint16) []byte {
	tiffHdr := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, // big-endian, IFD0 at 8
		0, 1, // one entry
		0x01, 0x12, 0, 3, 0, 0, 0, 1, byte(orient >> 8), byte(orient), 0, 0, // Orientation SHORT
		0, 0, 0, 0} // no next IFD
	payload := append([]byte("Exif\x00\x00"), tiffHdr...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, payload...)
	return append(out, jpg[2:]...)
}

// pixel returns the RGB at (x, y) of a w-wide image in packed RGB.
func pixel(pix []uint8, w, x, y int) [3]int {
	i := (y*w + x) * 3
	return [3]int{int(pix[i]), int(pix[i+1]), int(pix[i+2])}
}

func near(got [3]int, want color.NRGBA, tol int) bool {
	d := func(a, b int) int {
		if a > b {
			return a - b
		}
		return b - a
	}
	return d(got[0], int(want.R)) <= tol && d(got[1], int(want.G)) <= tol && d(got[2], int(want.B)) <= tol
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func httptestTLS(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.EnableHTTP2 = true
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short by Close are expected
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}
