package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gpuHealth is what the service reads of the GPU backend's state (package
// gpu): nil or why the device is unusable, and how often it was reopened
// after a lost context.
type gpuHealth interface {
	Health() error
	Resets() int
}

// gpuWatchEvery is how often the service looks at the GPU's state for
// the log.
const gpuWatchEvery = time.Second

// registerGPUMetrics adds tsnemap_gpu_healthy (1 while the device can run
// work, 0 while it is lost or could not be reopened) and
// tsnemap_gpu_resets_total (devices reopened after a lost context).
func registerGPUMetrics(reg prometheus.Registerer, g gpuHealth) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tsnemap_gpu_healthy",
			Help: "1 while the GPU can run jobs; 0 while its context is lost (reopened on the next job) or it could not be reopened (jobs asking for auto run on the CPU)."},
			func() float64 {
				if g.Health() != nil {
					return 0
				}
				return 1
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tsnemap_gpu_resets_total",
			Help: "Times the GPU was reopened after a sticky CUDA error or a panic in device work lost its context."},
			func() float64 { return float64(g.Resets()) }),
	)
}

// watchGPU logs, once each, the GPU's changes of state: lost, reopened,
// unusable, usable again. It returns when ctx ends.
func watchGPU(ctx context.Context, g gpuHealth, log *slog.Logger) {
	tick := time.NewTicker(gpuWatchEvery)
	defer tick.Stop()
	var lastErr error
	lastResets := g.Resets()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err, resets := g.Health(), g.Resets()
		if resets > lastResets {
			log.Warn("GPU reopened after its context was lost", "resets", resets)
		}
		switch {
		case err != nil && (lastErr == nil || err.Error() != lastErr.Error()):
			log.Error("GPU unusable; jobs asking for auto run on the CPU until it is reopened", "reason", err.Error(), "resets", resets)
		case err == nil && lastErr != nil && resets == lastResets:
			log.Info("GPU usable again", "resets", resets)
		}
		lastErr, lastResets = err, resets
	}
}
