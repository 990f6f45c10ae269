package loader

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tsnemap/tsnemap/internal/rowspool"
)

// ErrInvalidOptions: an option is out of range (the request is wrong, not
// the data).
var ErrInvalidOptions = errors.New("invalid options")

// ImageOptions say how every image is resized.
type ImageOptions struct {
	Width, Height int // default 100×100; each 4..512
}

// Progress counts images of one LoadImages call (or of a Loader, in Stats).
type Progress struct {
	Total  int64 // images asked for
	Loaded int64 // decoded and resized
	Failed int64 // given up on
	Bytes  int64 // image bytes downloaded
	// NewFailures are the images given up on since the previous report, so
	// a caller can show failures while loading goes on. Across all reports
	// of one LoadImages call every failure appears exactly once.
	NewFailures []Failure
}

// Failure is one image that could not be loaded.
type Failure struct {
	Row    int    // index into the rows given to LoadImages
	ID     string // the row's id
	URL    string // the image URL tried
	Reason string // short and human: "http 404", "not an image (text/html)", ...
}

// Images holds the pixels of the images that loaded.
type Images struct {
	Width, Height int
	// Pix holds Len() images of Width·Height·3 bytes each (RGB, row-major,
	// alpha composited on white), contiguous, in row order; nil when they
	// are spooled to a temporary file (Spooled; the Loader's SpoolAbove).
	// ReadRows reads them either way.
	Pix []uint8
	// Rows[k] is the index, in the rows given to LoadImages, of image k.
	Rows []int
	// Failures, in row order.
	Failures []Failure

	release func() // gives the pixels' memory back to the budget, once

	// spool holds the pixels instead of Pix. LoadImages writes image k
	// at its row's place, Rows[k] (placed: failed rows are holes);
	// AppendImages writes it at k.
	spool  *rowspool.File
	placed bool
}

// Spooled reports whether the pixels are in a temporary file instead of
// Pix: read them with ReadRows.
func (im *Images) Spooled() bool { return im.spool != nil }

// ReadRows copies the pixels of images lo, lo+1, … into dst, a whole
// number of images: from Pix, or from the spool file with pread. It is an
// embed.RowSource, safe for concurrent use once loading is done. An error
// names the file.
func (im *Images) ReadRows(ctx context.Context, lo int, dst []uint8) error {
	sz := im.Width * im.Height * 3
	n := len(dst) / max(sz, 1)
	if sz == 0 || len(dst)%sz != 0 || lo < 0 || lo+n > im.Len() {
		return fmt.Errorf("read images: %d bytes at image %d: there are %d images of %d bytes", len(dst), lo, im.Len(), sz)
	}
	switch {
	case im.spool == nil:
		copy(dst, im.Pix[lo*sz:])
		return ctx.Err()
	case !im.placed:
		return im.spool.ReadRows(ctx, lo, dst)
	}
	// Runs of images whose rows follow each other are one read each.
	for k := lo; k < lo+n; {
		run := 1
		for k+run < lo+n && im.Rows[k+run] == im.Rows[k]+run {
			run++
		}
		if err := im.spool.ReadRows(ctx, im.Rows[k], dst[(k-lo)*sz:(k-lo+run)*sz]); err != nil {
			return err
		}
		k += run
	}
	return nil
}

// AppendImages adds images after those held (an Images of ReserveImages,
// assembled from parts loaded elsewhere): their pixels, contiguous, to Pix
// or to the spool file, and their rows. Call Finish after the last.
func (im *Images) AppendImages(pix []uint8, rows []int) error {
	if sz := im.Width * im.Height * 3; len(pix) != len(rows)*sz {
		return fmt.Errorf("append images: %d bytes for %d images of %d bytes", len(pix), len(rows), sz)
	}
	if im.spool == nil {
		im.Pix = append(im.Pix, pix...)
	} else if err := im.spool.Append(pix); err != nil {
		return fmt.Errorf("append images: %w", err)
	}
	im.Rows = append(im.Rows, rows...)
	return nil
}

// Finish ends AppendImages: a spool file's writes are flushed, and it is
// read from then on.
func (im *Images) Finish() error {
	if im.spool == nil {
		return nil
	}
	if err := im.spool.Finish(); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}

// Release gives the memory of the images back to the Loader's memory
// budget and removes their spool file, if any. Call it once the pixels
// are no longer used (Pix and ReadRows must not be used after); calling
// it again does nothing.
func (im *Images) Release() {
	if im != nil && im.release != nil {
		im.release()
	}
}

// Len is the number of loaded images.
func (im *Images) Len() int { return len(im.Rows) }

// At returns the pixels of loaded image k; only when they are not
// Spooled.
func (im *Images) At(k int) []uint8 {
	sz := im.Width * im.Height * 3
	return im.Pix[k*sz : (k+1)*sz : (k+1)*sz]
}

func (o ImageOptions) withDefaults() (ImageOptions, error) {
	if o.Width == 0 {
		o.Width = 100
	}
	if o.Height == 0 {
		o.Height = 100
	}
	if o.Width < 4 || o.Width > 512 || o.Height < 4 || o.Height > 512 {
		return o, fmt.Errorf("%w: image size %d×%d: each side must be 4..512", ErrInvalidOptions, o.Width, o.Height)
	}
	return o, nil
}

// progressEvery is the longest gap between two progress reports while
// images load, so failures and bytes show even when nothing finishes for a
// while (slow hosts).
const progressEvery = 250 * time.Millisecond

// LoadImages downloads, decodes and resizes the image of every row.
//
// A broken image never fails the call: it becomes a Failure. The call fails
// with ErrNoImages when every image failed, and with the context's error
// when ctx is cancelled (every download stops before it returns). progress,
// if not nil, is called with the running counters, never concurrently, at
// most every 50 ms and at least every progressEvery (250 ms) while loading,
// and once at the end.
func (l *Loader) LoadImages(ctx context.Context, rows []Row, opts ImageOptions, progress func(Progress)) (*Images, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	n := len(rows)
	sz := opts.Width * opts.Height * 3
	release, spool, err := l.reserveJob(ctx, n, opts)
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			release()
		}
	}()
	var pix []uint8 // the pixels, unless they are spooled
	if spool == nil {
		pix = make([]uint8, n*sz)
	}
	reasons := make([]string, n) // "" once loaded; set exactly once per row by one goroutine
	loaded := make([]bool, n)

	var (
		cnt        struct{ loaded, failed, bytes atomic.Int64 }
		progressMu sync.Mutex
		lastReport time.Time
		newFails   []Failure // since the last report, under progressMu
	)
	l.stats.total.Add(int64(n))
	report := func(final bool) {
		if progress == nil {
			return
		}
		progressMu.Lock()
		defer progressMu.Unlock()
		now := time.Now()
		if !final && now.Sub(lastReport) < 50*time.Millisecond {
			return
		}
		lastReport = now
		fresh := newFails
		newFails = nil
		progress(Progress{Total: int64(n), Loaded: cnt.loaded.Load(), Failed: cnt.failed.Load(), Bytes: cnt.bytes.Load(), NewFailures: fresh})
	}
	fail := func(i int, reason string) {
		reasons[i] = reason
		cnt.failed.Add(1)
		l.stats.failed.Add(1)
		if progress != nil {
			progressMu.Lock()
			newFails = append(newFails, failure(rows, i, reason))
			progressMu.Unlock()
		}
		report(false)
	}

	// Report at least every progressEvery while loading, so failures and
	// bytes show even when nothing finishes for a while (slow hosts).
	stopTicker := func() {}
	if progress != nil {
		tick := time.NewTicker(progressEvery)
		done := make(chan struct{})
		var tw sync.WaitGroup
		tw.Add(1)
		go func() {
			defer tw.Done()
			for {
				select {
				case <-tick.C:
					report(false)
				case <-done:
					return
				}
			}
		}()
		stopTicker = sync.OnceFunc(func() { tick.Stop(); close(done); tw.Wait() })
		defer stopTicker()
	}

	s := newScheduler(ctx, l.cfg.MaxPerHost)
	defer s.stop()
	for i, r := range rows {
		u, err := url.Parse(r.ImageURL)
		switch {
		case r.ImageURL == "":
			fail(i, "no image URL")
		case len(r.ImageURL) > MaxURLBytes:
			fail(i, fmt.Sprintf("URL longer than %d bytes", MaxURLBytes))
		case err != nil:
			fail(i, "invalid URL")
		default:
			s.add(u.Host, i)
		}
	}
	report(true)

	// Downloads feed decoders through a buffer of a few images per decoder:
	// enough that a decoder finishing never waits for the network, small
	// enough that a slow decode holds back downloads (and their memory)
	// instead of piling bodies up.
	type decodeJob struct {
		row  int
		data []byte
	}
	jobs := make(chan decodeJob, 2*l.cfg.DecodeWorkers)

	var dl sync.WaitGroup
	for range min(l.cfg.MaxInFlight, max(n, 1)) {
		dl.Go(func() {
			for {
				i, host, ok := s.next()
				if !ok {
					return
				}
				data, err := l.fetchLimited(ctx, host, rows[i].ImageURL)
				s.done(host)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					fail(i, err.Error())
					continue
				}
				cnt.bytes.Add(int64(len(data)))
				l.stats.bytes.Add(int64(len(data)))
				select {
				case jobs <- decodeJob{i, data}:
				case <-ctx.Done():
					l.mem.release(int64(cap(data)))
					return
				}
			}
		})
	}
	var dec sync.WaitGroup
	for range l.cfg.DecodeWorkers {
		dec.Go(func() {
			var buf []uint8 // one image, written to the spool at its row
			if spool != nil {
				buf = make([]uint8, sz)
			}
			for j := range jobs {
				if ctx.Err() != nil {
					l.mem.release(int64(cap(j.data)))
					continue // drain so that downloaders never block
				}
				dst := buf
				if spool == nil {
					dst = pix[j.row*sz : (j.row+1)*sz]
				}
				err := l.decodeBudgeted(ctx, j.data, opts.Width, opts.Height, dst)
				l.mem.release(int64(cap(j.data)))
				if err != nil {
					fail(j.row, err.Error())
					continue
				}
				if spool != nil {
					if err := spool.WriteRowsAt(j.row, dst); err != nil {
						cancel(err) // the file, not the image: the whole call fails
						continue
					}
				}
				loaded[j.row] = true
				cnt.loaded.Add(1)
				l.stats.loaded.Add(1)
				report(false)
			}
		})
	}
	dl.Wait()
	close(jobs)
	dec.Wait()
	stopTicker()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load images: %w", context.Cause(ctx))
	}
	report(true)

	// Compact the loaded images to the front, keeping row order; the copy
	// never overlaps forwards because k ≤ i. Spooled images stay at their
	// rows' places in the file: ReadRows finds image k at row Rows[k].
	im := &Images{Width: opts.Width, Height: opts.Height}
	k := 0
	for i := range n {
		if !loaded[i] {
			im.Failures = append(im.Failures, failure(rows, i, reasons[i]))
			continue
		}
		if k != i && spool == nil {
			copy(pix[k*sz:(k+1)*sz], pix[i*sz:(i+1)*sz])
		}
		im.Rows = append(im.Rows, i)
		k++
	}
	if k == 0 {
		return im, fmt.Errorf("%w: all %d images failed (first: %s)", ErrNoImages, n, firstReason(im.Failures))
	}
	if spool != nil {
		if err := spool.Finish(); err != nil {
			return nil, fmt.Errorf("load images: %w", err)
		}
		im.spool, im.placed = spool, true
	} else {
		im.Pix = pix[: k*sz : k*sz]
	}
	done, im.release = true, sync.OnceFunc(release)
	return im, nil
}

// fetchLimited fetches an image under a permit of the HostLimiter, if
// any. A limiter that fails (its store unreachable) is passed over: the
// Loader's own MaxPerHost still holds.
func (l *Loader) fetchLimited(ctx context.Context, host, rawURL string) ([]byte, error) {
	if l.cfg.HostLimiter != nil {
		release, err := l.cfg.HostLimiter.Acquire(ctx, host)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err == nil:
			defer release()
		}
	}
	return l.fetch(ctx, nil, rawURL, l.cfg.MaxImageBytes, "image/*")
}

// spools reports whether n images of opts keep their pixels in a
// temporary file: they are more than SpoolAbove bytes.
func (l *Loader) spools(n int, opts ImageOptions) bool {
	return l.cfg.SpoolAbove >= 0 && int64(n)*int64(opts.Width)*int64(opts.Height)*3 > l.cfg.SpoolAbove
}

// jobNeed is the memory n images of opts take from the budget: what the
// engine holds per row, and their pixels, or only a block of them when
// they are spooled.
func (l *Loader) jobNeed(n int, opts ImageOptions) int64 {
	need := int64(n) * RowOverhead
	if l.spools(n, opts) {
		return need + SpoolBlock
	}
	return need + int64(n)*int64(opts.Width)*int64(opts.Height)*3
}

// reserveJob takes a job's memory from the budget before anything is
// allocated (jobNeed), and creates the spool file of a job whose pixels
// are spooled (nil when they are kept in memory). A job that can never
// fit fails at once with an error naming the numbers; one that fits waits
// until other jobs give memory back. release gives the memory back and
// removes the file.
func (l *Loader) reserveJob(ctx context.Context, n int, opts ImageOptions) (release func(), _ *rowspool.File, _ error) {
	if err := l.spoolRoom(n, opts); err != nil {
		return nil, nil, err
	}
	need := l.jobNeed(n, opts)
	err := l.mem.acquire(ctx, need, l.mem.keepJobs)
	if errors.Is(err, ErrOverBudget) {
		return nil, nil, l.overBudget(n, opts)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("load images: wait for memory: %w", err)
	}
	if !l.spools(n, opts) {
		return func() { l.mem.release(need) }, nil, nil
	}
	spool, err := rowspool.Create(l.cfg.SpoolDir, opts.Width*opts.Height*3)
	if err != nil {
		l.mem.release(need)
		return nil, nil, fmt.Errorf("load images: spool the pixels: %w", err)
	}
	return func() {
		l.mem.release(need)
		// Unlinked when created (on Linux): closing it frees its space,
		// and a failure to close has no one left to tell.
		_ = spool.Close()
	}, spool, nil
}

// spoolRoom fails n images of opts whose pixels go to disk when the spool
// directory has less room for them than they need, at once rather than
// when the disk fills up hours into loading. Other jobs may take room too:
// then a write fails, naming the file.
func (l *Loader) spoolRoom(n int, opts ImageOptions) error {
	if !l.spools(n, opts) {
		return nil
	}
	dir := cmp.Or(l.cfg.SpoolDir, os.TempDir())
	pix := int64(n) * int64(opts.Width) * int64(opts.Height) * 3
	free, ok := diskFree(dir)
	if !ok || pix <= free {
		return nil // a directory that cannot be read fails when the file is created, naming it
	}
	// Over the memory budget too, or only the disk's room.
	over, inMemory := ErrOverBudget, "nor could the %s of memory this server gives one job (three quarters of its memory budget of %s) hold them"
	if pix+int64(n)*RowOverhead <= l.mem.total-l.mem.keepJobs {
		over, inMemory = errors.New("over the spool directory's room"), "the %s of memory this server gives one job (three quarters of its memory budget of %s) could, with a higher spool-above"
	}
	return fmt.Errorf("%w: %w: %w: %d rows of %d×%d images need about %s for their pixels, kept on disk above %s (spool-above), but %s has %s free; "+inMemory+"; set limit to map fewer rows, or ask for a smaller image_size",
		ErrDatasetInvalid, ErrTooLarge, over, n, opts.Width, opts.Height, FormatBytes(pix), FormatBytes(l.cfg.SpoolAbove), dir, FormatBytes(free),
		FormatBytes(l.mem.total-l.mem.keepJobs), FormatBytes(l.mem.total))
}

// overBudget is the error of n images of opts that can never fit.
func (l *Loader) overBudget(n int, opts ImageOptions) error {
	need := l.jobNeed(n, opts)
	what := fmt.Sprintf("%s a row: %d×%d×3 bytes of pixels and %s for the engine", FormatBytes(int64(opts.Width)*int64(opts.Height)*3+RowOverhead),
		opts.Width, opts.Height, FormatBytes(RowOverhead))
	if l.spools(n, opts) {
		what = fmt.Sprintf("%s a row for the engine and %s to read the pixels back from disk", FormatBytes(RowOverhead), FormatBytes(SpoolBlock))
	}
	return fmt.Errorf("%w: %w: %w: %d rows of %d×%d images need about %s of memory (%s), more than the %s this server gives one job (three quarters of its memory budget of %s); set limit to map fewer rows, or ask for a smaller image_size",
		ErrDatasetInvalid, ErrTooLarge, ErrOverBudget, n, opts.Width, opts.Height, FormatBytes(need), what,
		FormatBytes(l.mem.total-l.mem.keepJobs), FormatBytes(l.mem.total))
}

// CheckImages fails as LoadImages would at once when n images of opts
// could never fit the memory budget; it takes nothing. A job loaded in
// shards by other workers checks first, and takes its memory only to
// assemble them (ReserveImages).
func (l *Loader) CheckImages(n int, opts ImageOptions) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if l.jobNeed(n, opts) > l.mem.total-l.mem.keepJobs {
		return l.overBudget(n, opts)
	}
	if err := l.spoolRoom(n, opts); err != nil {
		return err
	}
	return nil
}

// FitsNow reports whether n images of opts would have their memory at
// once, without waiting for other jobs to give some back: a caller that
// may leave the work to another process (a shard of a large job) asks
// first rather than wait here.
func (l *Loader) FitsNow(n int, opts ImageOptions) bool {
	opts, err := opts.withDefaults()
	if err != nil {
		return false
	}
	return l.mem.inUse()+l.jobNeed(n, opts) <= l.mem.total-l.mem.keepJobs
}

// MaxURLBytes is the longest image URL fetched; a longer one fails its row.
const MaxURLBytes = 8 << 10

// failure records row i's failure, its id, URL and reason cut to lengths
// a failure list can hold for every row.
func failure(rows []Row, i int, reason string) Failure {
	return Failure{Row: i, ID: Shorten(rows[i].ID, 256), URL: Shorten(rows[i].ImageURL, 2048), Reason: Shorten(reason, 512)}
}

func firstReason(f []Failure) string {
	if len(f) == 0 {
		return "no rows"
	}
	return fmt.Sprintf("row %d %s: %s", f[0].Row, f[0].URL, f[0].Reason)
}

// scheduler hands out rows to download so that no host has more than
// perHost in flight, taking hosts in turn so that one slow host does not
// starve the others, and rows of one host in order.
type scheduler struct {
	ctx     context.Context
	mu      sync.Mutex
	cond    *sync.Cond
	perHost int
	hosts   map[string]*hostQueue
	ready   []*hostQueue // hosts with rows pending
	rr      int
	pending int
	stop    func() bool
}

type hostQueue struct {
	name     string
	rows     []int
	inFlight int
}

func newScheduler(ctx context.Context, perHost int) *scheduler {
	s := &scheduler{ctx: ctx, perHost: perHost, hosts: map[string]*hostQueue{}}
	s.cond = sync.NewCond(&s.mu)
	s.stop = context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	return s
}

func (s *scheduler) add(host string, row int) {
	h := s.hosts[host]
	if h == nil {
		h = &hostQueue{name: host}
		s.hosts[host] = h
	}
	if len(h.rows) == 0 {
		s.ready = append(s.ready, h)
	}
	h.rows = append(h.rows, row)
	s.pending++
}

// next blocks until a row may be downloaded; ok is false when none are left
// or the context is done.
func (s *scheduler) next() (row int, host string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.ctx.Err() != nil || s.pending == 0 {
			return 0, "", false
		}
		for k := range s.ready {
			j := (s.rr + k) % len(s.ready)
			h := s.ready[j]
			if h.inFlight >= s.perHost {
				continue
			}
			row = h.rows[0]
			h.rows = h.rows[1:]
			h.inFlight++
			s.pending--
			if len(h.rows) == 0 {
				s.ready = append(s.ready[:j], s.ready[j+1:]...)
				s.rr = j
			} else {
				s.rr = j + 1
			}
			if s.pending == 0 {
				s.cond.Broadcast() // idle waiters can exit
			}
			return row, h.name, true
		}
		s.cond.Wait()
	}
}

func (s *scheduler) done(host string) {
	s.mu.Lock()
	s.hosts[host].inFlight--
	s.mu.Unlock()
	s.cond.Signal()
}

// ReserveImages takes from the memory budget what n images of opts (and
// the engine's share of their rows) need, as LoadImages does, and returns
// an empty Images to fill with AppendImages, then Finish (Pix has room for
// n images, or they go to a spool file, as LoadImages would do), whose
// Release gives the memory back. A job whose images were loaded elsewhere
// (in shards, by other workers) assembles them here.
func (l *Loader) ReserveImages(ctx context.Context, n int, opts ImageOptions) (*Images, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	release, spool, err := l.reserveJob(ctx, n, opts)
	if err != nil {
		return nil, err
	}
	im := &Images{Width: opts.Width, Height: opts.Height, Rows: make([]int, 0, n), spool: spool, release: sync.OnceFunc(release)}
	if spool == nil {
		im.Pix = make([]uint8, 0, n*opts.Width*opts.Height*3)
	}
	return im, nil
}
