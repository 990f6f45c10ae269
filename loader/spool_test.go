package loader

import (
	"context"
	"errors"
	"fmt"
	"image/color"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// spoolRows serves n JPEGs of two colours each, different for every row,
// at /img/i; the rows in broken answer 404 instead.
func spoolRows(t *testing.T, n int, broken ...int) []Row {
	t.Helper()
	files := testkit.Files{}
	var rows []Row
	s := serve(t, files)
	for i := range n {
		c1 := color.NRGBA{uint8(i * 7), uint8(255 - i*5), uint8(i * 3), 255}
		c2 := color.NRGBA{uint8(255 - i*3), uint8(i * 11), 128, 255}
		path := fmt.Sprintf("/img/%d", i)
		if !slices.Contains(broken, i) {
			files[path] = encJPEG(t, halves(40, 30, c1, c2), 90)
		}
		rows = append(rows, Row{Index: i, ID: fmt.Sprint(i), ImageURL: s.URL + path})
	}
	return rows
}

// Pixels above SpoolAbove go to a file: the same images, rows and
// failures as in memory, read back byte for byte; the budget holds only
// the engine's share and a block; Release closes (so removes) the file.
func TestSpooledImagesReadAsInMemory(t *testing.T) {
	const n = 30
	rows := spoolRows(t, n, 0, 11, 29)
	opts := ImageOptions{Width: 12, Height: 10}
	sz := 12 * 10 * 3
	mem, err := newTestLoader(t, func(c *Config) { c.SpoolAbove = -1 }).LoadImages(ctxT(t), rows, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Release()
	dir := t.TempDir()
	l := newTestLoader(t, func(c *Config) { c.SpoolAbove = int64(sz); c.SpoolDir = dir })
	sp, err := l.LoadImages(ctxT(t), rows, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sp.Spooled() || sp.Pix != nil || mem.Spooled() {
		t.Fatalf("spooled %v (Pix %d bytes), in memory %v: want only the first spooled", sp.Spooled(), len(sp.Pix), mem.Spooled())
	}
	if !slices.Equal(sp.Rows, mem.Rows) || !slices.Equal(sp.Failures, mem.Failures) || len(sp.Failures) != 3 {
		t.Fatalf("spooled rows %v failures %v; in memory %v %v", sp.Rows, sp.Failures, mem.Rows, mem.Failures)
	}
	if got, want := l.MemoryInUse(), int64(n)*RowOverhead+SpoolBlock; got != want {
		t.Errorf("budget holds %d bytes, want %d (the engine's share of every row asked for, and one block)", got, want)
	}
	for _, tc := range []struct{ lo, k int }{{0, n - 3}, {0, 1}, {9, 4}, {n - 4, 1}} {
		got := make([]uint8, tc.k*sz)
		if err := sp.ReadRows(ctxT(t), tc.lo, got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, mem.Pix[tc.lo*sz:(tc.lo+tc.k)*sz]) {
			t.Errorf("images %d+%d read from the spool differ from those in memory", tc.lo, tc.k)
		}
	}
	if err := sp.ReadRows(ctxT(t), n-3, make([]uint8, sz)); err == nil {
		t.Error("a read past the last image succeeded")
	}
	if testkit.OpenFilesIn(t, dir) != 1 {
		t.Errorf("%d spool files open in %s while the images are held, want 1", testkit.OpenFilesIn(t, dir), dir)
	}
	sp.Release()
	if k := testkit.OpenFilesIn(t, dir); k != 0 || l.MemoryInUse() != 0 {
		t.Errorf("after Release: %d spool files open, %d bytes of budget held; want none", k, l.MemoryInUse())
	}
}

// However loading ends without images (all failed, cancelled), the spool
// file is closed and the budget given back; an unusable SpoolDir fails
// the call naming it.
func TestSpoolRemovedWhenLoadingFails(t *testing.T) {
	t.Run("all images failed", func(t *testing.T) {
		dir := t.TempDir()
		l := newTestLoader(t, func(c *Config) { c.SpoolAbove = 1; c.SpoolDir = dir })
		_, err := l.LoadImages(ctxT(t), spoolRows(t, 4, 0, 1, 2, 3), ImageOptions{}, nil)
		if !errors.Is(err, ErrNoImages) {
			t.Fatalf("got %v, want ErrNoImages", err)
		}
		if k := testkit.OpenFilesIn(t, dir); k != 0 || l.MemoryInUse() != 0 {
			t.Errorf("%d spool files open, %d bytes of budget held; want none", k, l.MemoryInUse())
		}
	})
	t.Run("cancelled while loading", func(t *testing.T) {
		var started atomic.Int64
		loadedOne := make(chan struct{})
		jpg := encJPEG(t, halves(16, 16, red, blue), 90)
		s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if started.Add(1) == 1 {
				_, _ = w.Write(jpg) // one image loads and is spooled
				return
			}
			<-r.Context().Done()
		}))
		rows := make([]Row, 200)
		for i := range rows {
			rows[i] = Row{Index: i, ID: fmt.Sprint(i), ImageURL: s.URL + "/x.jpg"}
		}
		dir := t.TempDir()
		l := newTestLoader(t, func(c *Config) {
			c.SpoolAbove, c.SpoolDir, c.RequestTimeout, c.MaxInFlight, c.MaxPerHost = 1, dir, time.Minute, 4, 4
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := l.LoadImages(ctx, rows, ImageOptions{}, func(p Progress) {
				if p.Loaded == 1 && started.Load() > 1 {
					select {
					case <-loadedOne:
					default:
						close(loadedOne)
					}
				}
			})
			done <- err
		}()
		<-loadedOne
		if testkit.OpenFilesIn(t, dir) != 1 {
			t.Error("no spool file open while loading")
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if k := testkit.OpenFilesIn(t, dir); k != 0 || l.MemoryInUse() != 0 {
			t.Errorf("after cancel: %d spool files open, %d bytes of budget held; want none", k, l.MemoryInUse())
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "gone")
		l := newTestLoader(t, func(c *Config) { c.SpoolAbove = 1; c.SpoolDir = dir })
		_, err := l.LoadImages(ctxT(t), spoolRows(t, 2), ImageOptions{}, nil)
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("got %v, want an error naming %s", err, dir)
		}
		if l.MemoryInUse() != 0 {
			t.Errorf("%d bytes of budget held after the failure", l.MemoryInUse())
		}
	})
}

// Images assembled from parts (a sharded job's) spool as LoadImages does
// and read back what was appended.
func TestReserveImagesSpoolsAppendedImages(t *testing.T) {
	opts := ImageOptions{Width: 4, Height: 4}
	sz := 4 * 4 * 3
	part := func(first, k int) []uint8 {
		p := make([]uint8, k*sz)
		for i := range p {
			p[i] = uint8(first*sz + i)
		}
		return p
	}
	dir := t.TempDir()
	l := newTestLoader(t, func(c *Config) { c.SpoolAbove = 1; c.SpoolDir = dir })
	im, err := l.ReserveImages(ctxT(t), 7, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Release()
	if err := errors.Join(im.AppendImages(part(0, 3), []int{0, 1, 3}), im.AppendImages(part(3, 4), []int{4, 5, 6, 8}), im.Finish()); err != nil {
		t.Fatal(err)
	}
	got := make([]uint8, 7*sz)
	if err := im.ReadRows(ctxT(t), 0, got); err != nil {
		t.Fatal(err)
	}
	if !im.Spooled() || !slices.Equal(got, part(0, 7)) || !slices.Equal(im.Rows, []int{0, 1, 3, 4, 5, 6, 8}) {
		t.Errorf("spooled %v, rows %v; want the appended pixels and rows read back", im.Spooled(), im.Rows)
	}
}

// A job whose pixels go to disk but would not fit there fails at once,
// naming the directory and the numbers, before anything is allocated.
func TestSpoolNeedsRoomOnDisk(t *testing.T) {
	dir := t.TempDir()
	free, ok := diskFree(dir)
	if !ok {
		t.Skip("free disk space unknown here")
	}
	// Rows of 512×512 (768 KB each) for twice the free space.
	n := int(2*free/(512*512*3)) + 1
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{Index: i, ID: "x", ImageURL: "http://h.example/x.jpg"}
	}
	l := newTestLoader(t, func(c *Config) { c.SpoolDir, c.MemoryBudget = dir, 1<<50 })
	_, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: 512, Height: 512}, nil)
	if !errors.Is(err, ErrDatasetInvalid) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "free") {
		t.Fatalf("got %v, want dataset_invalid naming %s and its free space", err, dir)
	}
	if err := l.CheckImages(n, ImageOptions{Width: 512, Height: 512}); !errors.Is(err, ErrDatasetInvalid) {
		t.Errorf("CheckImages: %v, want the same refusal", err)
	}
	if l.MemoryInUse() != 0 || testkit.OpenFilesIn(t, dir) != 0 {
		t.Errorf("refusal left %d bytes of budget held, %d files open", l.MemoryInUse(), testkit.OpenFilesIn(t, dir))
	}
	t.Log(err)
}
