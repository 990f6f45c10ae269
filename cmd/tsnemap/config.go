package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

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
	logFormat     string
	logLevel      string
}

func (c *common) register(fs *flag.FlagSet, worker bool) {
	if !worker {
		fs.StringVar(&c.dataDir, "data-dir", "tsnemap-data", "directory of the embedded NATS JetStream store (jobs and results survive restarts)")
		fs.StringVar(&c.natsListen, "nats-listen", "", "also open the embedded NATS on this host:port, so workers elsewhere can join")
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
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
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
		emb, err := jobs.StartEmbedded(ctx, jobs.EmbeddedConfig{DataDir: c.dataDir, Listen: c.natsListen})
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
	cfg := loader.Config{AllowPrivateNetworks: c.allowPrivate, AllowedNetworks: extraAllowed}
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
	_, err := gpu.Probe()
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
