package jobs

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	running      prometheus.Gauge
	finishedJobs *prometheus.CounterVec
	stageSeconds *prometheus.HistogramVec
	imagesLoaded prometheus.Counter
	imagesFailed prometheus.Counter
	bytesFetched prometheus.Counter
	iterPerSec   prometheus.Gauge
}

// NewMetrics creates the worker metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tsnemap_worker_jobs_running",
			Help: "Jobs this process is running now."}),
		finishedJobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tsnemap_worker_jobs_finished_total",
			Help: "Jobs this process finished, by final status."}, []string{"status"}),
		stageSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tsnemap_stage_duration_seconds",
			Help:    "Time jobs spent in each stage.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)}, []string{"stage"}),
		imagesLoaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "tsnemap_images_loaded_total",
			Help: "Images downloaded, decoded and resized."}),
		imagesFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "tsnemap_images_failed_total",
			Help: "Images that could not be loaded."}),
		bytesFetched: prometheus.NewCounter(prometheus.CounterOpts{Name: "tsnemap_fetched_bytes_total",
			Help: "Bytes of tables and images downloaded."}),
		iterPerSec: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tsnemap_optimizer_iterations_per_second",
			Help: "Optimiser speed of the most recent job, gradient steps per second."}),
	}
	reg.MustRegister(m.running, m.finishedJobs, m.stageSeconds, m.imagesLoaded, m.imagesFailed, m.bytesFetched, m.iterPerSec)
	return m
}

func (m *Metrics) started() {
	if m != nil {
		m.running.Inc()
	}
}

func (m *Metrics) stopped() {
	if m != nil {
		m.running.Dec()
	}
}

func (m *Metrics) finished(s Status) {
	if m != nil {
		m.finishedJobs.WithLabelValues(string(s)).Inc()
	}
}

func (m *Metrics) stageDone(s Stage, d time.Duration) {
	if m != nil && s != "" {
		m.stageSeconds.WithLabelValues(string(s)).Observe(d.Seconds())
	}
}

func (m *Metrics) images(loaded, failed int) {
	if m == nil {
		return
	}
	if loaded > 0 {
		m.imagesLoaded.Add(float64(loaded))
	}
	if failed > 0 {
		m.imagesFailed.Add(float64(failed))
	}
}

func (m *Metrics) bytes(n int64) {
	if m != nil && n > 0 {
		m.bytesFetched.Add(float64(n))
	}
}

func (m *Metrics) iterationRate(r float64) {
	if m != nil {
		m.iterPerSec.Set(r)
	}
}
