package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/internal/testkit"
)

// TestBrowser runs web/e2e/browser.mjs (playwright-core driving Debian's
// headless Chromium) against a real `serve --demo` on loopback: the form,
// live progress, the map, pan, zoom, hover, downloads, cancel, the API-key
// dialog, and a frame-time measurement at 10,000 points. It skips, saying
// why, where node, Chromium or playwright-core are missing (.ci/run
// installs them).
//
// Screenshots go to $TSNEMAP_SCREENSHOTS (default: a new temporary
// folder, kept); their paths are logged.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: skipped in -short mode")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("browser test: node is not installed (apt-get install nodejs npm)")
	}
	chromium := os.Getenv("TSNEMAP_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("browser test: no Chromium at %s (apt-get install chromium)", chromium)
	}
	dir, err := filepath.Abs("../../web/e2e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Skipf("browser test: playwright-core is not installed (cd web/e2e && npm ci)")
	}
	shots := os.Getenv("TSNEMAP_SCREENSHOTS")
	if shots == "" {
		if shots, err = os.MkdirTemp("", "tsnemap-screenshots-"); err != nil {
			t.Fatal(err)
		}
	} else if shots, err = filepath.Abs(shots); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	c := common{dataDir: t.TempDir(), backend: "cpu", threads: 2, concurrency: 1, maxTimeout: time.Hour,
		retention: time.Hour, maxDeliveries: 3, natsReplicas: 1}
	log := testkit.QuietLogger()
	svc, err := startService(ctx, c, "127.0.0.1:0", true, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = svc.wait(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer rcancel()
	cmd := exec.CommandContext(rctx, node, "browser.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TSNEMAP_URL="+svc.url, "TSNEMAP_SCREENSHOTS="+shots, "TSNEMAP_CHROMIUM="+chromium)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The figure and the pictures' paths are also written beside the
	// pictures, for CI to print without running the test verbosely.
	var figures strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "FRAMETIME "), strings.HasPrefix(line, "SCREENSHOT "):
			t.Log(line)
			figures.WriteString(line + "\n")
		case testing.Verbose():
			t.Log(line)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("browser test failed (%v):\n%s", err, stderr.String())
	}
	if err := os.WriteFile(filepath.Join(shots, "frametime.txt"), []byte(figures.String()), 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("screenshots in %s", shots)
}
