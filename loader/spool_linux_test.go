package loader

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// spoolFullEnv marks the child process of TestSpoolFillsWhileLoading.
const spoolFullEnv = "TSNEMAP_TEST_SPOOL_FULL"

// The spool's disk fills while images are being written to it: the call
// fails (the file, not an image: no row is blamed), the error names the
// spool and says why, and the file is closed and the budget given back.
// The disk is filled for real in a child process whose files may not grow
// past 64 KB (RLIMIT_FSIZE; Go ignores SIGXFSZ, so the write returns
// EFBIG), which the statfs check before loading cannot foresee.
func TestSpoolFillsWhileLoading(t *testing.T) {
	if os.Getenv(spoolFullEnv) == "" {
		cmd := exec.CommandContext(ctxT(t), os.Args[0], "-test.run=^TestSpoolFillsWhileLoading$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), spoolFullEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestSpoolFillsWhileLoading") {
			t.Fatalf("child process: %v\n%s", err, out)
		}
		t.Logf("child process:\n%s", out)
		return
	}
	lim := syscall.Rlimit{Cur: 64 << 10, Max: 64 << 10}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	dir := t.TempDir()
	l := newTestLoader(t, func(c *Config) { c.SpoolAbove, c.SpoolDir = 1, dir })
	// 40 images of 100×100 RGB are 1.2 MB of pixels: the file stops at 64 KB.
	_, err := l.LoadImages(ctxT(t), spoolRows(t, 40), ImageOptions{Width: 100, Height: 100}, nil)
	if !errors.Is(err, syscall.EFBIG) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("got %v, want the write's EFBIG naming the spool in %s", err, dir)
	}
	t.Logf("loading failed: %v", err)
	if k := testkit.OpenFilesIn(t, dir); k != 0 || l.MemoryInUse() != 0 {
		t.Errorf("after the failure: %d spool files open, %d bytes of budget held; want none", k, l.MemoryInUse())
	}
}
