package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tsnemap/tsnemap/gpu"
	"github.com/tsnemap/tsnemap/internal/testkit"
)

// Without a usable GPU (this build has no CUDA, or the machine no device):
// --backend gpu is refused with the probe's reason, auto logs it and runs
// on the CPU, and bench --backend gpu fails plainly.
func TestBackendWithoutGPU(t *testing.T) {
	ctx := context.Background()
	if info, err := gpu.Probe(ctx); err == nil {
		t.Skipf("a GPU is present (%v)", info)
	}
	_, reason := gpu.Probe(ctx)

	if _, err := pickGPU(ctx, "gpu", testkit.QuietLogger()); err == nil ||
		!strings.Contains(err.Error(), reason.Error()) {
		t.Errorf("--backend gpu: %v, want the probe's reason %q", err, reason)
	}
	var logged bytes.Buffer
	g, err := pickGPU(ctx, "auto", slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil || g != nil {
		t.Errorf("--backend auto: %v, %v; want the CPU", g, err)
	}
	if !strings.Contains(logged.String(), "using the CPU") || !strings.Contains(logged.String(), reason.Error()) {
		t.Errorf("auto logged %q, want the reason", logged.String())
	}
	if _, err := pickGPU(ctx, "tpu", testkit.QuietLogger()); err == nil {
		t.Error("--backend tpu accepted")
	}

	var stderr bytes.Buffer
	err = benchCommand(ctx, []string{"--backend", "gpu", "--cases", "100x5"}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--backend gpu") {
		t.Errorf("bench --backend gpu: %v", err)
	}
}
