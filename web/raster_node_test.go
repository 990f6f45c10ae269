package web

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestRasterInNode runs web/e2e/raster.test.mjs, the unit tests of the
// page's CPU drawing (static/raster.js), under node's test runner: no
// browser, a few seconds. It skips where node is missing.
func TestRasterInNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed (apt-get install nodejs)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "raster.test.mjs")
	cmd.Dir = "e2e"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test raster.test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
