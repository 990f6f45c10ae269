package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tsnemap/tsnemap/api"
	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/gpu"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/jobs/pipeline"
	"github.com/tsnemap/tsnemap/loader"
)

// envPrefix: every flag --some-name may also be given as TSNEMAP_SOME_NAME;
// a flag on the command line wins over the environment.
const envPrefix = "TSNEMAP_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseWithEnv parses args, then fills every flag not given from its
// environment variable.
func parseWithEnv(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := lookupEnv(getenv, envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", envName(f.Name), v, e)
			}
		}
	})
	return err
}

func lookupEnv(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// usageWithEnv prints the flags with their environment variables.
func usageWithEnv(fs *flag.FlagSet, w io.Writer, head string) func() {
	return func() {
		fmt.Fprint(w, head)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "false" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(w, "  --%s\n        %s%s  [$%s]\n", f.Name, f.Usage, def, envName(f.Name))
		})
	}
}

// common are the settings of serve and worker.
type common struct {
	dataDir       string
	natsURL       string
	natsListen    string
	natsReplicas  int
	backend       string
	threads       int
	concurrency   int
	maxTimeout    time.Duration
	retention     time.Duration
	maxDeliveries int
	ackWait       time.Duration
	allowPrivate  bool
	maxImages     int
	maxStore      int64
	access        access // serve only
	logFormat     string
	logLevel      string
}

func (c *common) register(fs *flag.FlagSet, worker bool) {
	if !worker {
		fs.StringVar(&c.dataDir, "data-dir", "tsnemap-data", "directory of the embedded NATS JetStream store (jobs and results survive restarts)")
		fs.StringVar(&c.natsListen, "nats-listen", "", "also open the embedded NATS on this host:port, so workers elsewhere can join")
		c.access.register(fs)
		fs.Int64Var(&c.maxStore, "max-store", 0, "bytes the embedded NATS may store under --data-dir (0: NATS's default, most of the disk); past it submits answer 503")
	}
	fs.StringVar(&c.natsURL, "nats-url", "", "use this external NATS (comma-separated URLs of one cluster) instead of the embedded one")
	fs.IntVar(&c.natsReplicas, "nats-replicas", 1, "replicas of the stream and buckets on an external NATS cluster")
	fs.StringVar(&c.backend, "backend", "auto", "compute backend: auto, cpu or gpu")
	fs.IntVar(&c.threads, "threads", 0, "CPU threads for the engine (0: all cores)")
	fs.IntVar(&c.concurrency, "concurrency", 1, "jobs this process runs at once (serve: 0 runs no jobs, an API-only node)")
	fs.DurationVar(&c.maxTimeout, "max-timeout", 24*time.Hour, "longest a job may run; the default and cap of timeout_seconds")
	fs.DurationVar(&c.retention, "retention", 7*24*time.Hour, "how long finished jobs and results are kept")
	fs.IntVar(&c.maxDeliveries, "max-deliveries", 3, "times a job may be started (after worker crashes) before it is failed")
	fs.DurationVar(&c.ackWait, "ack-wait", 30*time.Second, "how long a job whose worker went silent (crashed) waits before another worker takes it")
	fs.BoolVar(&c.allowPrivate, "allow-private-networks", false, "let jobs fetch from private, loopback and link-local addresses (trusted networks only)")
	fs.IntVar(&c.maxImages, "max-images", 1_000_000, "most rows (and images) one job may have; a larger table fails the job")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// access are serve's settings of who may use the API, and how much.
type access struct {
	keysFile        string
	metricsToken    string
	insecureAnyAddr bool
	maxActiveJobs   int
	submitRate      float64
	submitBurst     int
}

func (a *access) register(fs *flag.FlagSet) {
	fs.StringVar(&a.keysFile, "api-keys-file", "", "file of API keys, one a line (name:key, or a bare key); with keys, every /v1 call needs Authorization: Bearer <key> and each key sees only its own jobs")
	fs.StringVar(&a.metricsToken, "metrics-token", "", "if set, /metrics needs Authorization: Bearer <this token>")
	fs.BoolVar(&a.insecureAnyAddr, "insecure-listen-any", false, "without API keys, listen on --addr even if it is not loopback (anyone who reaches it may use the API)")
	fs.IntVar(&a.maxActiveJobs, "max-active-jobs", 100, "most jobs one key may have queued or running at once (0: no limit); past it submits answer 429")
	fs.Float64Var(&a.submitRate, "submit-rate", 2, "submits a second allowed per key (per client address without keys), a token bucket (0: no limit)")
	fs.IntVar(&a.submitBurst, "submit-burst", 20, "submits one key may make at once before --submit-rate applies")
}

// keys reads --api-keys-file (none when it is not given).
func (a *access) keys() ([]api.Key, error) {
	if a.keysFile == "" {
		return nil, nil
	}
	f, err := os.Open(a.keysFile)
	if err != nil {
		return nil, fmt.Errorf("--api-keys-file: %w", err)
	}
	defer f.Close()
	keys, err := api.ParseKeys(f)
	if err != nil {
		return nil, fmt.Errorf("--api-keys-file %s: %w", a.keysFile, err)
	}
	return keys, nil
}

// listenAddr is where serve listens: --addr, except that without keys a
// non-loopback --addr is narrowed to loopback (same port) unless
// --insecure-listen-any says otherwise. warn says what was decided.
func (a *access) listenAddr(addr string, haveKeys bool) (listen, warn string, err error) {
	if haveKeys {
		return addr, "", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("--addr %q: %w", addr, err)
	}
	if isLoopbackHost(host) {
		return addr, "", nil
	}
	if a.insecureAnyAddr {
		return addr, "no API keys (--api-keys-file) and --insecure-listen-any: anyone who can reach " + addr + " may submit, read and cancel jobs", nil
	}
	listen = net.JoinHostPort("127.0.0.1", port)
	return listen, "no API keys (--api-keys-file): listening on loopback " + listen + " only, not " + addr + "; give keys, or --insecure-listen-any to listen there anyway", nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (c *common) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
}

// connectNATS starts the embedded NATS (or joins the external one) and opens
// the job store. The returned close function releases both.
func (c *common) connectNATS(ctx context.Context, log *slog.Logger) (*jobs.Store, *nats.Conn, func(), error) {
	var nc *nats.Conn
	var closeAll func()
	if c.natsURL != "" {
		var err error
		if nc, err = jobs.Connect(c.natsURL); err != nil {
			return nil, nil, nil, err
		}
		closeAll = nc.Close
		log.Info("joined NATS", "url", c.natsURL)
	} else {
		if err := os.MkdirAll(c.dataDir, 0o750); err != nil {
			return nil, nil, nil, fmt.Errorf("data dir: %w", err)
		}
		emb, err := jobs.StartEmbedded(ctx, jobs.EmbeddedConfig{DataDir: c.dataDir, Listen: c.natsListen, MaxStore: c.maxStore})
		if err != nil {
			return nil, nil, nil, err
		}
		if nc, err = emb.Connect(); err != nil {
			emb.Shutdown()
			return nil, nil, nil, err
		}
		closeAll = func() { nc.Close(); emb.Shutdown() }
		log.Info("embedded NATS started", "data_dir", c.dataDir, "client_url", emb.ClientURL())
	}
	store, err := jobs.Open(ctx, nc, jobs.Config{Replicas: c.natsReplicas, MaxDeliveries: c.maxDeliveries, Retention: c.retention, AckWait: c.ackWait})
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return store, nc, closeAll, nil
}

// pipeline builds the loader and backends for jobs; its Close releases
// both.
func (c *common) pipeline(ctx context.Context, log *slog.Logger, extraAllowed []netip.Prefix) (*pipeline.Pipeline, error) {
	cfg := loader.Config{AllowPrivateNetworks: c.allowPrivate, AllowedNetworks: extraAllowed, MaxRows: c.maxImages}
	g, err := pickGPU(ctx, c.backend, log)
	if err != nil {
		return nil, err
	}
	l, err := loader.New(cfg)
	if err != nil {
		if g != nil {
			g.Close()
		}
		return nil, err
	}
	p := &pipeline.Pipeline{Loader: l, CPU: cpu.New(c.threads), Log: log}
	if g != nil {
		p.GPU = g
	}
	return p, nil
}

// pickGPU resolves --backend. "auto" probes for a CUDA device and opens
// it, and on any failure logs the reason and returns nil (the CPU);
// "gpu" makes the same failure fatal at start-up rather than on the first
// job; "cpu" does not look.
func pickGPU(ctx context.Context, backend string, log *slog.Logger) (*gpu.Backend, error) {
	switch backend {
	case "cpu":
		return nil, nil
	case "auto", "gpu":
	default:
		return nil, fmt.Errorf("--backend %q: want auto, cpu or gpu", backend)
	}
	_, err := gpu.Probe(ctx)
	if err == nil {
		var g *gpu.Backend
		if g, err = gpu.New(ctx); err == nil {
			log.Info("GPU backend", "device", g.Info().String())
			return g, nil
		}
	}
	if backend == "gpu" {
		return nil, fmt.Errorf("--backend gpu: %w", err)
	}
	level := slog.LevelWarn
	if errors.Is(err, gpu.ErrNoCUDA) {
		level = slog.LevelInfo // the default build: nothing unexpected
	}
	log.Log(ctx, level, "no GPU backend, using the CPU", "reason", err.Error())
	return nil, nil
}

func (p *common) backendName(pl *pipeline.Pipeline) string {
	if pl.GPU != nil {
		return pl.GPU.Name()
	}
	return pl.CPU.Name()
}
