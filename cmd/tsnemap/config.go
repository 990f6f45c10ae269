package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tsnemap/tsnemap/api"
	"github.com/tsnemap/tsnemap/cpu"
	"github.com/tsnemap/tsnemap/gpu"
	"github.com/tsnemap/tsnemap/jobs"
	"github.com/tsnemap/tsnemap/loader"
	"github.com/tsnemap/tsnemap/pipeline"
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
	natsSec       natsSecurity
	backend       string
	threads       int
	concurrency   int
	maxTimeout    time.Duration
	retention     time.Duration
	maxDeliveries int
	ackWait       time.Duration
	reconfigure   bool // nats-config only: change the shared settings
	allowPrivate  bool
	maxImages     int
	memoryBudget  byteSize
	spoolAbove    byteSize
	spoolDir      string
	maxStore      int64
	shardAbove    int
	shardSize     int
	shardSlots    int
	workerName    string
	maxPerHost    int
	clusterHosts  bool
	hostLimiter   loader.HostLimiter // set from clusterHosts once NATS is open
	access        access             // serve only
	logFormat     string
	logLevel      string
	// Following tables (serve only; docs/growing.md).
	minFollow time.Duration
	maxFollow time.Duration
}

func (c *common) register(fs *flag.FlagSet, worker bool) {
	if !worker {
		fs.StringVar(&c.dataDir, "data-dir", "tsnemap-data", "directory of the embedded NATS JetStream store (jobs and results survive restarts)")
		fs.StringVar(&c.natsListen, "nats-listen", "", "also open the embedded NATS on this host:port, so workers elsewhere can join")
		c.access.register(fs)
		fs.DurationVar(&c.minFollow, "min-follow-interval", time.Minute, "shortest follow_interval_seconds a job may ask for")
		fs.DurationVar(&c.maxFollow, "max-follow", 30*24*time.Hour, "how long a job follows its table at most")
		fs.Int64Var(&c.maxStore, "max-store", 0, "bytes the embedded NATS may store under --data-dir (0: NATS's default, most of the disk); past it submits answer 503")
	}
	fs.StringVar(&c.natsURL, "nats-url", "", "use this external NATS (comma-separated URLs of one cluster) instead of the embedded one")
	fs.IntVar(&c.natsReplicas, "nats-replicas", 0, "replicas of the stream and buckets on a NATS cluster, shared by every node (0: as they are, 1 when creating them); a node never changes them, see 'tsnemap nats-config'")
	c.natsSec.register(fs, worker)
	fs.StringVar(&c.backend, "backend", "auto", "compute backend: auto, cpu or gpu")
	fs.IntVar(&c.threads, "threads", 0, "CPU threads for the engine (0: all cores)")
	fs.IntVar(&c.concurrency, "concurrency", 1, "jobs this process runs at once (serve: 0 runs no jobs, an API-only node)")
	fs.DurationVar(&c.maxTimeout, "max-timeout", 24*time.Hour, "longest a job may run; the default and cap of timeout_seconds")
	fs.DurationVar(&c.retention, "retention", 7*24*time.Hour, "how long finished jobs and results are kept")
	fs.IntVar(&c.maxDeliveries, "max-deliveries", 3, "attempts at a job that may crash (their worker died or went silent) before it is failed; hand-backs by stopping workers do not count")
	fs.DurationVar(&c.ackWait, "ack-wait", 0, "how long a job whose worker went silent (crashed) waits before another worker takes it, shared by every node (0: as it is, 30s when creating it); a node never changes it, see 'tsnemap nats-config'")
	fs.BoolVar(&c.allowPrivate, "allow-private-networks", false, "let jobs fetch from private, loopback and link-local addresses (trusted networks only)")
	fs.IntVar(&c.maxImages, "max-images", 1_000_000, "most rows (and images) one job may have; a larger table fails the job")
	fs.Var(&c.memoryBudget, "memory-budget", "memory the jobs of this process may hold at once (pixels, downloads, decodes), e.g. 8GB; a job that can never fit fails naming the numbers (0: half the machine's or the container's memory)")
	c.spoolAbove = loader.DefaultSpoolAbove
	fs.Var(&c.spoolAbove, "spool-above", "a job whose pixels (rows × width × height × 3 bytes) are more than this keeps them in a temporary file in --spool-dir instead of memory, e.g. 512MB (0: never)")
	fs.StringVar(&c.spoolDir, "spool-dir", "", "directory of those temporary files, which are unlinked as soon as they are created (default: the system's temporary directory, $TMPDIR or /tmp)")
	fs.IntVar(&c.shardAbove, "shard-above", 20_000, "a job of more rows loads its images in shards that every worker of the cluster takes (a request's shard_size forces it)")
	fs.IntVar(&c.shardSize, "shard-size", 5_000, "rows of one shard of a large job")
	fs.IntVar(&c.shardSlots, "shard-concurrency", 1, "shards this process loads at once, of any job (at least 1: a job's own worker always takes its shards too)")
	fs.IntVar(&c.maxPerHost, "max-per-host", 16, "most image requests to one host at once")
	fs.BoolVar(&c.clusterHosts, "cluster-host-limit", true, "make --max-per-host a limit of the whole cluster (leases shared through NATS; a dead worker's leases free after 10 s), not of each process")
	fs.StringVar(&c.workerName, "worker-name", "", "this worker's name in the history of the shards it loads (default: host name and process id)")
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
	allowedHosts    string
	trustedProxies  string
	maxStreams      int
}

func (a *access) register(fs *flag.FlagSet) {
	fs.StringVar(&a.keysFile, "api-keys-file", "", "file of API keys, one a line (name:key, or a bare key); with keys, every /v1 call needs Authorization: Bearer <key> and each key sees only its own jobs")
	fs.StringVar(&a.metricsToken, "metrics-token", "", "if set, /metrics needs Authorization: Bearer <this token>")
	fs.BoolVar(&a.insecureAnyAddr, "insecure-listen-any", false, "without API keys, listen on --addr even if it is not loopback (anyone who reaches it may use the API)")
	fs.IntVar(&a.maxActiveJobs, "max-active-jobs", 100, "most jobs one key may have queued or running at once (0: no limit); past it submits answer 429")
	fs.Float64Var(&a.submitRate, "submit-rate", 2, "jobs created a second per key (per client address without keys), a token bucket; refused submits cost nothing (0: no limit)")
	fs.IntVar(&a.submitBurst, "submit-burst", 20, "jobs one key may create at once before --submit-rate applies")
	fs.IntVar(&a.maxStreams, "max-streams", 32, "event streams one key (one client address without keys) may hold open at once (0: no limit); past it 429")
	fs.StringVar(&a.allowedHosts, "allowed-hosts", "", "comma-separated host names the API answers to (the Host header), * for any; default: loopback names and IP addresses without keys (against DNS rebinding), any with keys")
	fs.StringVar(&a.trustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDR ranges of reverse proxies whose X-Forwarded-For is believed; from anyone else it is ignored")
}

// hosts is --allowed-hosts as a list (none when not given).
func (a *access) hosts() []string {
	var out []string
	for _, h := range strings.Split(a.allowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// proxies parses --trusted-proxies.
func (a *access) proxies() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range strings.Split(a.trustedProxies, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			addr, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("--trusted-proxies: %q is neither an address nor a CIDR range", v)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// keys reads --api-keys-file (none when it is not given).
func (a *access) keys() ([]api.Key, error) {
	if a.keysFile == "" {
		return nil, nil
	}
	f, err := os.Open(a.keysFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("--api-keys-file (TSNEMAP_API_KEYS_FILE) %s: no such file; put the API keys there, one name:key a line (in a container: mount the file, or a secret, at that path): %w", a.keysFile, err)
	}
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

// listenAddr checks where serve may listen: --addr as given, except that
// without keys a non-loopback --addr is refused (a usage error naming both
// ways out) unless --insecure-listen-any says otherwise. warn says what was
// decided.
func (a *access) listenAddr(addr string, haveKeys bool) (listen, warn string, err error) {
	if haveKeys {
		return addr, "", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", usageErrorf("--addr %q: %v; give host:port, such as localhost:8080", addr, err)
	}
	if isLoopbackHost(host) {
		return addr, "", nil
	}
	if a.insecureAnyAddr {
		return addr, "no API keys (--api-keys-file) and --insecure-listen-any: anyone who can reach " + addr + " may submit, read and cancel jobs", nil
	}
	return "", "", usageErrorf("--addr %s is not a loopback address and this server has no API keys, so anyone who reaches it could use the API. "+
		"Give keys with --api-keys-file FILE (TSNEMAP_API_KEYS_FILE; one key a line, e.g. from openssl rand -hex 24), "+
		"or pass --insecure-listen-any (TSNEMAP_INSECURE_LISTEN_ANY=true) to listen there without keys; "+
		"or listen on loopback only (--addr localhost:%s)", addr, port)
}

// byteSize is a flag of bytes: a number with an optional unit, KB, MB, GB
// or TB (powers of 1024), or B.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(v string) error {
	s := strings.ToUpper(strings.TrimSpace(v))
	mult := int64(1)
	for i, u := range []string{"KB", "MB", "GB", "TB"} {
		if t, ok := strings.CutSuffix(s, u); ok {
			s, mult = strings.TrimSpace(t), int64(1)<<(10*(i+1))
			break
		}
	}
	s = strings.TrimSpace(strings.TrimSuffix(s, "B"))
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return fmt.Errorf("%q is not a size: give bytes, or a number with KB, MB, GB or TB (e.g. 8GB)", v)
	}
	*b = byteSize(f * float64(mult))
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// natsSecurity are the credentials and TLS settings of NATS: required of
// clients by the embedded server (serve --nats-listen), presented to an
// external one (--nats-url).
type natsSecurity struct {
	user, password, token, nkeySeedFile string
	tlsCert, tlsKey, tlsCA              string
}

func (n *natsSecurity) register(fs *flag.FlagSet, worker bool) {
	fs.StringVar(&n.user, "nats-user", "", "NATS user (with --nats-password): required of clients by the embedded NATS, presented to --nats-url")
	fs.StringVar(&n.password, "nats-password", "", "NATS password of --nats-user (better given as the environment variable)")
	fs.StringVar(&n.token, "nats-token", "", "NATS token, instead of a user and password (better given as the environment variable)")
	fs.StringVar(&n.nkeySeedFile, "nats-nkey-seed", "", "file holding an NATS nkey user seed (SU...), instead of a user or token")
	if !worker {
		fs.StringVar(&n.tlsCert, "nats-tls-cert", "", "TLS certificate file (PEM) of the embedded NATS's --nats-listen port")
		fs.StringVar(&n.tlsKey, "nats-tls-key", "", "TLS key file (PEM) of --nats-tls-cert")
	}
	fs.StringVar(&n.tlsCA, "nats-tls-ca", "", "CA certificates file (PEM) to verify the TLS certificate of --nats-url (default: the system's)")
}

func (n *natsSecurity) auth() (jobs.NATSAuth, error) {
	a := jobs.NATSAuth{User: n.user, Password: n.password, Token: n.token}
	if n.nkeySeedFile != "" {
		seed, err := os.ReadFile(n.nkeySeedFile)
		if err != nil {
			return a, fmt.Errorf("--nats-nkey-seed: %w", err)
		}
		a.NKeySeed = seed
	}
	return a, nil
}

func (n *natsSecurity) clientOptions(a jobs.NATSAuth) ([]nats.Option, error) {
	var tc *tls.Config
	if n.tlsCA != "" {
		pem, err := os.ReadFile(n.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--nats-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--nats-tls-ca %s: no PEM certificates in it", n.tlsCA)
		}
		tc = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return a.ClientOptions(tc)
}

func (n *natsSecurity) serverTLS() (*tls.Config, error) {
	if n.tlsCert == "" && n.tlsKey == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(n.tlsCert, n.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("--nats-tls-cert/--nats-tls-key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
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
	auth, err := c.natsSec.auth()
	if err != nil {
		return nil, nil, nil, err
	}
	if c.natsURL != "" {
		opts, err := c.natsSec.clientOptions(auth)
		if err != nil {
			return nil, nil, nil, err
		}
		if nc, err = jobs.Connect(c.natsURL, opts...); err != nil {
			return nil, nil, nil, err
		}
		closeAll = nc.Close
		log.Info("joined NATS", "url", c.natsURL)
	} else {
		if err := os.MkdirAll(c.dataDir, 0o750); err != nil {
			return nil, nil, nil, fmt.Errorf("data dir: %w", err)
		}
		srvTLS, err := c.natsSec.serverTLS()
		if err != nil {
			return nil, nil, nil, err
		}
		emb, err := jobs.StartEmbedded(ctx, jobs.EmbeddedConfig{DataDir: c.dataDir, Listen: c.natsListen, MaxStore: c.maxStore,
			Auth: auth, TLS: srvTLS})
		if err != nil {
			return nil, nil, nil, err
		}
		if nc, err = emb.Connect(); err != nil {
			emb.Shutdown()
			return nil, nil, nil, err
		}
		closeAll = func() { nc.Close(); emb.Shutdown() }
		log.Info("embedded NATS started", "data_dir", c.dataDir, "client_url", emb.ClientURL(), "credentials", auth.Set(), "tls", srvTLS != nil)
		if c.natsListen != "" && srvTLS == nil {
			log.Warn("the embedded NATS takes connections without TLS: credentials and jobs cross the network in clear; give --nats-tls-cert and --nats-tls-key")
		}
	}
	store, err := jobs.Open(ctx, nc, jobs.Config{Replicas: c.natsReplicas, MaxDeliveries: c.maxDeliveries, Retention: c.retention, AckWait: c.ackWait, Reconfigure: c.reconfigure})
	if errors.Is(err, jobs.ErrSharedConfig) {
		err = fmt.Errorf("%w (start this node with the shared value, or without --nats-replicas/--ack-wait to take it; to change it for every node: tsnemap nats-config)", err)
	}
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return store, nc, closeAll, nil
}

// pipeline builds the loader and backends for jobs; its Close releases
// both.
func (c *common) pipeline(ctx context.Context, log *slog.Logger, extraAllowed []netip.AddrPort) (*pipeline.Pipeline, error) {
	if c.maxPerHost < 0 {
		return nil, fmt.Errorf("--max-per-host %d: want ≥ 1 (0: the default, 16)", c.maxPerHost)
	}
	switch {
	case c.shardSize != 0 && (c.shardSize < 10 || c.shardSize > 100_000):
		return nil, fmt.Errorf("--shard-size %d: want 10..100000", c.shardSize)
	case c.shardAbove < 0:
		return nil, fmt.Errorf("--shard-above %d: want ≥ 0 (0: the default, 20000)", c.shardAbove)
	case c.shardSlots < 0:
		return nil, fmt.Errorf("--shard-concurrency %d: want ≥ 1", c.shardSlots)
	}
	cfg := loader.Config{AllowPrivateNetworks: c.allowPrivate, AllowedAddrPorts: extraAllowed, MaxRows: c.maxImages,
		MemoryBudget: int64(c.memoryBudget), MaxPerHost: c.maxPerHost, HostLimiter: c.hostLimiter,
		SpoolAbove: int64(c.spoolAbove), SpoolDir: c.spoolDir}
	if c.spoolAbove == 0 {
		cfg.SpoolAbove = -1 // --spool-above 0: never
	}
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
	log.Info("memory budget of jobs", "bytes", l.Config().MemoryBudget, "size", loader.FormatBytes(l.Config().MemoryBudget),
		"spool_above", l.Config().SpoolAbove, "spool_dir", cmp.Or(c.spoolDir, os.TempDir()))
	p := &pipeline.Pipeline{Loader: l, CPU: cpu.New(c.threads), Log: log, ShardAbove: c.shardAbove, ShardSize: c.shardSize}
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

// workerConfig is the job worker of serve and worker.
func (c *common) workerConfig(pl *pipeline.Pipeline, log *slog.Logger, metrics *jobs.Metrics) jobs.WorkerConfig {
	return jobs.WorkerConfig{Concurrency: c.concurrency, MaxTimeout: c.maxTimeout, Logger: log, Metrics: metrics,
		ShardConcurrency: max(c.shardSlots, 1), Name: c.workerName, Shards: pl, GPU: pl.GPU != nil}
}

// hostLeases starts the cluster-wide per-host limit (--cluster-host-limit)
// on store's NATS; stop gives back the leases held. Without it, the limit
// stays per process.
func (c *common) hostLeases(ctx context.Context, store *jobs.Store, log *slog.Logger) (loader.HostLimiter, func(), error) {
	if !c.clusterHosts {
		return nil, func() {}, nil
	}
	hl, err := jobs.NewHostLeases(ctx, store, jobs.HostLeasesConfig{Limit: cmp.Or(c.maxPerHost, 16), Owner: c.workerName, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); hl.Run(lctx) }()
	return hl, func() { cancel(); <-done }, nil
}
