package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tsnemap/tsnemap/api"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
	"github.com/tsnemap/tsnemap/pipeline"
	"github.com/tsnemap/tsnemap/web"
)

func serveCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tsnemap serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs, false)
	addr := fs.String("addr", "localhost:8080", "HTTP listen address of the API")
	demo := fs.Bool("demo", false, "also serve a generated demo catalogue (paintings in a few styles) and log a curl command that maps it")
	fs.Usage = usageWithEnv(fs, stderr, "usage: tsnemap serve [flags]\n\nRuns the HTTP API and a worker, on an embedded NATS JetStream by default.\n\nflags:\n")
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	svc, err := startService(ctx, c, *addr, *demo, log)
	if err != nil {
		return err
	}
	if svc.demo != nil {
		fmt.Fprint(stdout, svc.demo.instructions(svc.url))
	}
	return svc.wait(ctx)
}

// service is a running `tsnemap serve`: API, worker and retention sweep on
// one job store.
type service struct {
	url     string
	log     *slog.Logger
	demo    *demoServer
	hs      *http.Server
	wg      sync.WaitGroup
	served  chan error
	stop    context.CancelFunc // stops the worker and the sweep
	cleanup []func()
}

// startService starts everything and returns once the API listens. The
// worker stops taking jobs when ctx ends; wait then shuts the rest down.
func startService(ctx context.Context, c common, addr string, demo bool, log *slog.Logger) (_ *service, err error) {
	s := &service{log: log, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	var allowed []netip.AddrPort
	if demo {
		if s.demo, err = startDemo(log); err != nil {
			return nil, err
		}
		s.cleanup = append(s.cleanup, s.demo.Close)
		// Open the guard for the demo's own address and port only.
		allowed = append(allowed, s.demo.addr)
	}
	store, _, closeNATS, err := c.connectNATS(ctx, log)
	if err != nil {
		return nil, err
	}
	s.cleanup = append(s.cleanup, closeNATS)

	limiter, stopLeases, err := c.hostLeases(ctx, store, log)
	if err != nil {
		return nil, err
	}
	s.cleanup = append(s.cleanup, stopLeases)
	c.hostLimiter = limiter
	pl, err := c.pipeline(ctx, log, allowed)
	if err != nil {
		return nil, err
	}
	s.cleanup = append(s.cleanup, pl.Close)

	keys, err := c.access.keys()
	if err != nil {
		return nil, err
	}
	listen, warn, err := c.access.listenAddr(addr, len(keys) > 0)
	if err != nil {
		return nil, err
	}
	if warn != "" {
		log.Warn(warn)
	}
	proxies, err := c.access.proxies()
	if err != nil {
		return nil, err
	}
	if h, _, _ := net.SplitHostPort(listen); len(keys) == 0 && c.access.allowedHosts == "" && !isLoopbackHost(h) {
		log.Warn("without API keys the API answers only to loopback names and IP addresses as Host (against DNS rebinding); list other names clients use with --allowed-hosts")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := jobs.NewMetrics(reg)
	gh, _ := pl.GPU.(gpuHealth)
	if gh != nil {
		registerGPUMetrics(reg, gh)
	}
	backend := c.backendName(pl)
	var webOpts web.Options
	if s.demo != nil {
		webOpts.Demo = s.demo.webDemo()
	}
	page, err := web.New(webOpts)
	if err != nil {
		return nil, err
	}
	apiCfg := api.Config{
		Jobs: store, URLs: urlPolicy{pl.Loader}, Backend: backend, GPU: pl.GPU != nil, Web: page,
		MaxTimeout: c.maxTimeout, Version: versionString(), Registry: reg, Logger: log,
		Keys: keys, MetricsToken: c.access.metricsToken, MaxActiveJobs: c.access.maxActiveJobs,
		SubmitRate: c.access.submitRate, SubmitBurst: c.access.submitBurst, MaxImages: c.maxImages,
		AllowedHosts: c.access.hosts(), TrustedProxies: proxies, MaxStreamsPerKey: c.access.maxStreams,
		MinFollowInterval: c.minFollow,
	}
	if gh != nil {
		apiCfg.GPUHealth = gh.Health
	}
	if s.demo != nil {
		apiCfg.Demo = s.demo.catalogue()
	}
	srv, err := api.New(apiCfg)
	if err != nil {
		return nil, err
	}
	if srv.MetricsOpen() {
		log.Warn("/metrics is open to anyone who reaches the API (no --metrics-token, no API keys); set --metrics-token to close it")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", listen, err)
	}
	// Requests (SSE streams above all) see their context end when the
	// server shuts down, so Shutdown does not wait on them.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	s.hs = &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// A request (its body is at most 1 MB) is read within ReadTimeout;
		// a keep-alive connection left idle is closed after IdleTimeout.
		// No WriteTimeout: event streams and large results take long.
		ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return baseCtx },
	}
	s.hs.RegisterOnShutdown(cancelBase)

	ctx, s.stop = context.WithCancel(ctx)
	s.cleanup = append(s.cleanup, s.stop)
	// The quota on active jobs reads an index of owners kept by a watch.
	if err := store.WatchIndex(ctx); err != nil {
		return nil, err
	}
	if gh != nil {
		s.wg.Go(func() { watchGPU(ctx, gh, log) })
	}
	if c.concurrency > 0 { // 0: an API-only node; workers elsewhere run the jobs
		worker := jobs.NewWorker(store, pl, c.workerConfig(pl, log, metrics))
		s.wg.Go(func() { _ = worker.Run(ctx) })
	}
	if c.concurrency > 0 {
		fol := &pipeline.Follower{Store: store, Pipeline: pl, MaxFollow: c.maxFollow, Poll: min(5*time.Second, max(c.minFollow/4, 100*time.Millisecond)), Log: log}
		s.wg.Go(func() { fol.Run(ctx) })
	}
	s.wg.Go(func() {
		store.SweepEvery(ctx, time.Hour, func(n int, err error) {
			if err != nil {
				log.Warn("retention sweep", "err", err)
			} else {
				log.Info("retention sweep", "deleted", n)
			}
		})
	})
	go func() { s.served <- s.hs.Serve(ln) }()

	s.url = "http://" + ln.Addr().String()
	log.Info("tsnemap serving", "url", s.url, "backend", backend, "version", versionString(), "concurrency", c.concurrency, "api_keys", len(keys))
	if s.demo != nil {
		log.Info("demo catalogue ready; the command below (also on standard output) maps it", "curl", s.demo.curl(s.url))
	}
	return s, nil
}

// wait runs until ctx ends (or the listener fails), then stops the API,
// waits for the worker to hand its jobs back, and releases NATS.
func (s *service) wait(ctx context.Context) error {
	var err error
	select {
	case <-ctx.Done():
	case e := <-s.served:
		if !errors.Is(e, http.ErrServerClosed) {
			err = fmt.Errorf("serve: %w", e)
		}
	}
	s.log.Info("shutting down: handing running jobs back")
	s.stop()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.hs.Shutdown(sctx)
	s.wg.Wait()
	s.close()
	s.log.Info("stopped")
	return err
}

func (s *service) close() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	s.cleanup = nil
}

// urlPolicy refuses at submit time only what the loader's guard would
// refuse (a private address, a bad scheme); a host that does not resolve
// now is left to fail the job as dataset_unreachable.
type urlPolicy struct{ l *loader.Loader }

func (p urlPolicy) ValidateURL(ctx context.Context, raw string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := p.l.ValidateURL(ctx, raw)
	if errors.Is(err, loader.ErrForbiddenAddress) {
		return err
	}
	return nil
}

func workerCommand(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("tsnemap worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs, true)
	fs.Usage = usageWithEnv(fs, stderr, "usage: tsnemap worker --nats-url URL [flags]\n\nRuns jobs from a shared NATS (started by 'tsnemap serve --nats-listen' or a NATS cluster).\n\nflags:\n")
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	if c.natsURL == "" || c.concurrency < 1 {
		fmt.Fprintln(stderr, "tsnemap worker: --nats-url (or TSNEMAP_NATS_URL) is required, and --concurrency must be ≥ 1")
		return errUsage
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	store, _, closeNATS, err := c.connectNATS(ctx, log)
	if err != nil {
		return err
	}
	defer closeNATS()
	limiter, stopLeases, err := c.hostLeases(ctx, store, log)
	if err != nil {
		return err
	}
	defer stopLeases()
	c.hostLimiter = limiter
	pl, err := c.pipeline(ctx, log, nil)
	if err != nil {
		return err
	}
	defer pl.Close()
	log.Info("tsnemap worker started", "backend", c.backendName(pl), "concurrency", c.concurrency, "version", versionString())
	w := jobs.NewWorker(store, pl, c.workerConfig(pl, log, nil))
	err = w.Run(ctx)
	log.Info("worker stopped")
	return err
}
