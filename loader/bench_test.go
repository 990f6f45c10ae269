package loader

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The loader benchmark: a loopback server in a separate process (so that
// its CPU is not counted as the loader's) serves 2,000 JPEGs of 800×600;
// the loader loads them at 100×100. Run, with the Python baseline in the
// same run:
//
//	go test ./loader -run '^$' -bench 'LoadImages|SeedPython' -benchtime 1x
//
// Images are made once and kept in $TMPDIR/tsnemap-loader-bench-v1.
const (
	benchImages = 2000
	benchW      = 800
	benchH      = 600
)

// seedScript finds the original script's loader: $TSNEMAP_SEED_LOADER, or
// shared/bench/seed_loader.py beside the repository (where CI and the
// development machines keep it).
func seedScript() string {
	if p := os.Getenv("TSNEMAP_SEED_LOADER"); p != "" {
		return p
	}
	p, _ := filepath.Abs(filepath.Join("..", "..", "shared", "bench", "seed_loader.py"))
	return p
}

func benchDir(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(os.TempDir(), "tsnemap-loader-bench-v1")
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range work {
				b := benchJPEG(uint64(i))
				if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)+".jpg"), b, 0o644); err != nil {
					panic(err)
				}
			}
		})
	}
	for i := range benchImages {
		work <- i
	}
	close(work)
	wg.Wait()
	var tab strings.Builder
	tab.WriteString("id\ttitle\n")
	for i := range benchImages {
		fmt.Fprintf(&tab, "%d\tPicture %d\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "table.tsv"), []byte(tab.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// benchJPEG is a photo-like 800×600 picture: a random gradient, random
// soft blobs, waves and grain, so that every file has its own content and
// a realistic amount of entropy-coded detail (quality 85, 4:2:0).
func benchJPEG(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	img := image.NewYCbCr(image.Rect(0, 0, benchW, benchH), image.YCbCrSubsampleRatio420)
	type blob struct{ x, y, rad, y0, cb, cr float64 }
	blobs := make([]blob, 6)
	for i := range blobs {
		blobs[i] = blob{r.Float64() * benchW, r.Float64() * benchH, 40 + r.Float64()*200, r.Float64()*255 - 128, r.Float64()*120 - 60, r.Float64()*120 - 60}
	}
	g0, gx, gy := r.Float64()*255, r.Float64()*0.2-0.1, r.Float64()*0.2-0.1
	fx, fy := r.Float64()*0.1, r.Float64()*0.1
	cb0, cr0 := 128+r.Float64()*60-30, 128+r.Float64()*60-30
	clamp := func(v float64) uint8 { return uint8(max(0, min(255, v))) }
	for y := 0; y < benchH; y++ {
		for x := 0; x < benchW; x++ {
			v := g0 + gx*float64(x) + gy*float64(y) + 20*math.Sin(fx*float64(x)+fy*float64(y)) + r.NormFloat64()*6
			cb, cr := cb0, cr0
			for _, b := range blobs {
				dx, dy := float64(x)-b.x, float64(y)-b.y
				w := math.Exp(-(dx*dx + dy*dy) / (b.rad * b.rad))
				v += w * b.y0
				cb += w * b.cb
				cr += w * b.cr
			}
			img.Y[y*img.YStride+x] = clamp(v)
			if x%2 == 0 && y%2 == 0 {
				ci := img.COffset(x, y)
				img.Cb[ci], img.Cr[ci] = clamp(cb), clamp(cr)
			}
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// TestBenchServer is not a test: the benchmarks run the test binary again
// with TSNEMAP_BENCH_SERVE_DIR set to make it a file server in its own
// process. It prints its URL and serves until its stdin closes.
func TestBenchServer(t *testing.T) {
	dir := os.Getenv("TSNEMAP_BENCH_SERVE_DIR")
	if dir == "" {
		t.Skip("helper process for the benchmarks")
	}
	latency, _ := time.ParseDuration(os.Getenv("TSNEMAP_BENCH_LATENCY"))
	files := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files["/"+e.Name()] = b
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if latency > 0 {
			time.Sleep(latency) // the simulated network round trip
		}
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	})}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("URL http://%s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = srv.Close()
}

func startBenchServer(b *testing.B, latency time.Duration) string {
	b.Helper()
	dir := benchDir(b)
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServer$")
	cmd.Env = append(os.Environ(), "TSNEMAP_BENCH_SERVE_DIR="+dir, "TSNEMAP_BENCH_LATENCY="+latency.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "URL "); ok {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return u
		}
	}
	b.Fatal("bench server did not start")
	return ""
}

func cpuTime(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkLoadImages(b *testing.B) {
	for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run("latency="+lat.String(), func(b *testing.B) {
			base := startBenchServer(b, lat)
			l, err := New(Config{AllowPrivateNetworks: true})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			var images int
			cpu0 := cpuTime(syscall.RUSAGE_SELF)
			b.ResetTimer()
			for b.Loop() {
				tab, err := l.FetchTable(ctx, base+"/table.tsv", TableOptions{ImageURLTemplate: base + "/{id}.jpg"})
				if err != nil {
					b.Fatal(err)
				}
				im, err := l.LoadImages(ctx, tab.Rows, ImageOptions{Width: 100, Height: 100}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if len(im.Failures) > 0 {
					b.Fatalf("%d failures, first %+v", len(im.Failures), im.Failures[0])
				}
				images += im.Len()
			}
			b.StopTimer()
			cpu := cpuTime(syscall.RUSAGE_SELF) - cpu0
			b.ReportMetric(float64(images)/b.Elapsed().Seconds(), "images/s")
			b.ReportMetric(cpu.Seconds()/float64(images), "cpu-s/image")
		})
	}
}

// BenchmarkSeedPython runs the original script's approach (requests, a
// thread pool, Pillow) against the same server and files.
func BenchmarkSeedPython(b *testing.B) {
	const py = "/usr/bin/python3"
	script := seedScript()
	if _, err := os.Stat(script); err != nil {
		b.Skipf("no %s (set TSNEMAP_SEED_LOADER)", script)
	}
	if err := exec.Command(py, "-c", "import requests, PIL").Run(); err != nil {
		b.Skipf("needs Debian's python3-requests and python3-pil (%s: %v)", py, err)
	}
	for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run("latency="+lat.String(), func(b *testing.B) {
			base := startBenchServer(b, lat)
			var images int
			cpu0 := cpuTime(syscall.RUSAGE_CHILDREN)
			for b.Loop() {
				cmd := exec.Command(py, script, "--table", base+"/table.tsv", "--template", base+"/{id}.jpg")
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if _, err := cmd.Output(); err != nil {
					b.Fatalf("%v: %s", err, stderr.String())
				}
				if !strings.Contains(stderr.String(), fmt.Sprintf("loaded %d failed 0", benchImages)) {
					b.Fatalf("python: %s", stderr.String())
				}
				images += benchImages
			}
			cpu := cpuTime(syscall.RUSAGE_CHILDREN) - cpu0
			b.ReportMetric(float64(images)/b.Elapsed().Seconds(), "images/s")
			b.ReportMetric(cpu.Seconds()/float64(images), "cpu-s/image")
		})
	}
}

// BenchmarkDecode is the CPU cost of one image, without the network: the
// figure to profile (-cpuprofile). "stdlib" forces image/jpeg, for the
// comparison with the fast path.
func BenchmarkDecode(b *testing.B) {
	dir := benchDir(b)
	var files [][]byte
	for i := range 50 {
		d, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i)+".jpg"))
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, d)
	}
	for _, full := range []bool{false, true} {
		name := "fast"
		if full {
			name = "stdlib"
		}
		b.Run(name, func(b *testing.B) {
			l, err := New(Config{})
			if err != nil {
				b.Fatal(err)
			}
			l.fullJPEG = full
			dst := make([]byte, 100*100*3)
			i := 0
			cpu0 := cpuTime(syscall.RUSAGE_SELF)
			for b.Loop() {
				if err := l.decodeInto(files[i%len(files)], 100, 100, dst); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(i)/1000, "ms/image")
			b.ReportMetric((cpuTime(syscall.RUSAGE_SELF)-cpu0).Seconds()*1000/float64(i), "cpu-ms/image")
		})
	}
}
