package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// TestMillionRowsAt512FailBeforeAllocating: 1,000,000 rows at 512×512 would
// need 786 GB of pixels. The call fails at once with an error naming the
// numbers, having allocated next to nothing (before, the runtime aborted
// the whole process on the allocation), and holds no budget after.
func TestMillionRowsAt512FailBeforeAllocating(t *testing.T) {
	rows := make([]Row, 1_000_000)
	for i := range rows {
		rows[i] = Row{Index: i, ID: "x", ImageURL: "http://h.example/x.jpg"}
	}
	l := newTestLoader(t, nil)
	mem := startMem()
	im, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: 512, Height: 512}, nil)
	alloc, _ := mem.report()
	if im != nil || !errors.Is(err, ErrOverBudget) || !errors.Is(err, ErrDatasetInvalid) {
		t.Fatalf("LoadImages: %v", err)
	}
	for _, want := range []string{"1000000 rows", "512×512", "memory budget", "set limit"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	if alloc > 64*mib {
		t.Errorf("refusing allocated %d MB", alloc/mib)
	}
	if l.MemoryInUse() != 0 {
		t.Errorf("budget held after the refusal: %d", l.MemoryInUse())
	}
	t.Log(err)
}

// TestJobsShareOneBudget: a job that fits the budget waits while another
// holds it, and goes on once that one releases its images.
func TestJobsShareOneBudget(t *testing.T) {
	img := encPNG(t, halves(8, 8, color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 0, 255, 255}))
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(img) }))
	// Enough rows that one decode's share of the budget (an eighth) holds
	// a decode's estimate (about 1.2 MB at 100×100).
	rows := make([]Row, 192)
	for i := range rows {
		rows[i] = Row{Index: i, ID: strconv.Itoa(i), ImageURL: srv.URL + "/" + strconv.Itoa(i) + ".png"}
	}
	opts := ImageOptions{Width: 100, Height: 100}
	job := int64(len(rows)) * (100*100*3 + RowOverhead)
	// Room for one job's pixels (at most three quarters of the budget), not two.
	l := newTestLoader(t, func(c *Config) { c.MemoryBudget = 2 * job })
	first, err := l.LoadImages(ctxT(t), rows, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.MemoryInUse(); got != job {
		t.Fatalf("held after the first job: %d, want %d", got, job)
	}
	var second atomic.Pointer[Images]
	done := make(chan error, 1)
	go func() {
		im, err := l.LoadImages(ctxT(t), rows, opts, nil)
		second.Store(im)
		done <- err
	}()
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		select {
		case err := <-done:
			t.Fatalf("the second job ran while the first held the budget: %v", err)
		default:
		}
		return l.mem.waiters() == 1, "the second job is not waiting for memory"
	})
	first.Release()
	first.Release() // twice gives back once
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	second.Load().Release()
	if got := l.MemoryInUse(); got != 0 {
		t.Errorf("held at the end: %d", got)
	}
}

// TestAnnouncedLengthReservesNothing: 16 servers announce 50 MB bodies,
// send 1 KB and stall. Before, each download reserved its announced
// length (800 MB); now memory is taken as bytes arrive.
func TestAnnouncedLengthReservesNothing(t *testing.T) {
	var started atomic.Int32
	release := make(chan struct{})
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(50<<20-1))
		w.WriteHeader(200)
		_, _ = w.Write(bytes.Repeat([]byte{0xFF}, 1024))
		w.(http.Flusher).Flush()
		started.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	rows := make([]Row, 16)
	for i := range rows {
		rows[i] = Row{ID: strconv.Itoa(i), ImageURL: fmt.Sprintf("%s/%d.jpg", srv.URL, i)}
	}
	l := newTestLoader(t, func(c *Config) { c.MaxPerHost = 16; c.RequestTimeout = time.Minute })
	ctx, cancel := contextWithCancel(t)
	mem := startMem()
	go func() { _, _ = l.LoadImages(ctx, rows, ImageOptions{Width: 8, Height: 8}, nil) }()
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		return started.Load() == 16, fmt.Sprintf("%d downloads started", started.Load())
	})
	_, live := mem.report()
	held := l.MemoryInUse() - 16*(8*8*3+RowOverhead)
	cancel()
	t.Logf("16 stalled downloads announcing 50 MB: %d KB of budget held, heap grew %d MB", held>>10, live/mib)
	if held > 16*64<<10 || live > 100*mib {
		t.Errorf("16 stalled downloads hold %d KB of budget, heap grew %d MB", held>>10, live/mib)
	}
	testkit.Eventually(t, 10*time.Second, func() (bool, string) {
		return l.MemoryInUse() == 0, fmt.Sprintf("%d bytes held after cancel", l.MemoryInUse())
	})
}

// TestDecodeTakesFromTheBudget: a small 16-bit PNG of 4000×4000 pixels
// needs ~190 MB to decode. With a budget whose share for one decode is
// smaller, that row fails naming the numbers (before, it was decoded
// whatever the memory), and the other rows load.
func TestDecodeTakesFromTheBudget(t *testing.T) {
	big := image.NewGray16(image.Rect(0, 0, 4000, 4000))
	var b bytes.Buffer
	if err := png.Encode(&b, big); err != nil {
		t.Fatal(err)
	}
	small := encPNG(t, halves(8, 8, color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 0, 255, 255}))
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "big") {
			_, _ = w.Write(b.Bytes())
			return
		}
		_, _ = w.Write(small)
	}))
	l := newTestLoader(t, func(c *Config) { c.MemoryBudget = 800 << 20 }) // 100 MB a decode
	rows := []Row{{ID: "big", ImageURL: srv.URL + "/big.png"}, {ID: "small", ImageURL: srv.URL + "/small.png"}}
	im, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: 16, Height: 16}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Release()
	if im.Len() != 1 || len(im.Failures) != 1 || !strings.Contains(im.Failures[0].Reason, "needs about") {
		t.Fatalf("loaded %d, failures %+v", im.Len(), im.Failures)
	}
	t.Log(im.Failures[0].Reason)
}

// TestDecodeEstimate checks the estimate against what decoding takes.
func TestDecodeEstimate(t *testing.T) {
	photo := halves(1000, 800, color.NRGBA{200, 30, 30, 255}, color.NRGBA{20, 40, 220, 255})
	for _, tc := range []struct {
		name, format string
		data         []byte
	}{
		{"16-bit gray PNG", "png", encPNG(t, image.NewGray16(image.Rect(0, 0, 1000, 1000)))},
		{"8-bit RGBA PNG", "png", encPNG(t, image.NewNRGBA(image.Rect(0, 0, 1000, 1000)))},
		{"baseline JPEG", "jpeg", encJPEG(t, photo, 90)},
	} {
		f, err := sniff(tc.data)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := f.decodeConfig(bytes.NewReader(tc.data))
		est := decodeBytes(tc.format, cfg, tc.data, 100, 100)
		l := &Loader{cfg: Config{MaxImagePixels: 1e8}, fullJPEG: true}
		dst := make([]byte, 100*100*3)
		mem := startMem()
		err = l.decodeInto(tc.data, 100, 100, dst)
		alloc, _ := mem.report()
		if err != nil || est < alloc {
			t.Errorf("%s: estimate %d below the %d allocated (%v)", tc.name, est, alloc, err)
		}
		t.Logf("%s: estimate %d, allocated %d", tc.name, est, alloc)
	}
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, cancel
}

// TestLongURLsAndIDsBounded: an image URL past MaxURLBytes fails its row
// without a request, and every failure holds a bounded id, URL and reason
// (a table's values may be 64 KB each).
func TestLongURLsAndIDsBounded(t *testing.T) {
	var hits atomic.Int32
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1); http.NotFound(w, r) }))
	long := strings.Repeat("x", 60<<10)
	rows := []Row{{ID: long, ImageURL: srv.URL + "/" + long}, {ID: "b", ImageURL: srv.URL + "/" + long[:5000]}}
	l := newTestLoader(t, nil)
	im, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: 8, Height: 8}, nil)
	if !errors.Is(err, ErrNoImages) || im == nil || len(im.Failures) != 2 {
		t.Fatalf("%v %+v", err, im)
	}
	if hits.Load() != 1 {
		t.Errorf("%d requests, want 1 (the over-long URL is not fetched)", hits.Load())
	}
	if !strings.Contains(im.Failures[0].Reason, "URL longer than") {
		t.Errorf("reason: %s", im.Failures[0].Reason)
	}
	for _, f := range im.Failures {
		if len(f.ID) > 260 || len(f.URL) > 2052 || len(f.Reason) > 516 {
			t.Errorf("failure of row %d: id %d, URL %d, reason %d bytes", f.Row, len(f.ID), len(f.URL), len(f.Reason))
		}
	}
}
