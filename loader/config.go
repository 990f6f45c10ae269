package loader

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// EnvAllowPrivateNetworks is the environment variable that, when true, opens
// the private-network guard (the flag --allow-private-networks does the same).
const EnvAllowPrivateNetworks = "TSNEMAP_ALLOW_PRIVATE_NETWORKS"

// Config holds the limits and settings of a Loader. Zero fields take the
// defaults given in their comments.
type Config struct {
	MaxTableBytes  int64 // bytes of the table; default 100 MB
	MaxRows        int   // data rows of the table; default 1,000,000
	MaxColumns     int   // columns of any line of the table; default 1,000
	MaxCellBytes   int   // bytes of one value of the table; default 64 KB
	MaxLineBytes   int   // bytes of one line of the table; default 1 MB
	MaxImageBytes  int64 // bytes of one image, enforced while streaming; default 50 MB
	MaxImagePixels int64 // width×height of one image, from its header; default 100 megapixels

	// MemoryBudget is the memory the Loader's jobs may hold at once, all
	// jobs of the process together: each job's pixel array (rows × width ×
	// height × 3 bytes, plus RowOverhead a row for the engine), taken
	// before it is allocated; each body as its bytes arrive; each decode
	// (estimated from the image's header) while it runs. A job that could
	// never fit fails at once, naming the numbers; one that fits waits for
	// others to finish. Default: DefaultMemoryBudget (half the memory).
	MemoryBudget int64
	// SpoolAbove: a job whose pixels (rows × width × height × 3 bytes)
	// are more than this keeps them in a temporary file in SpoolDir
	// instead of memory (package internal/rowspool: unlinked at once,
	// written as images decode, read back in blocks), and takes from the
	// budget only RowOverhead a row and SpoolBlock. Default
	// DefaultSpoolAbove (1 GiB, about 35,800 images of 100×100); negative:
	// never.
	SpoolAbove int64
	// SpoolDir is the directory of those files; default the system's
	// temporary directory (os.TempDir).
	SpoolDir string
	// MaxFeaturesBytes bounds a features file (features_url), counted
	// while streaming; default 1 GiB (about 500,000 vectors of 512 float32).
	MaxFeaturesBytes int64

	MaxInFlight   int // downloads in flight for one LoadImages call; default 64
	MaxPerHost    int // of those, to one host; default 16
	DecodeWorkers int // decoding and resizing goroutines; default GOMAXPROCS

	RequestTimeout time.Duration // one HTTP attempt, headers and body; default 30 s
	MaxAttempts    int           // attempts per URL on retryable failures; default 3
	RetryBaseDelay time.Duration // first backoff, doubled each attempt, with jitter; default 250 ms
	MaxRetryAfter  time.Duration // cap on a server's Retry-After; default 10 s
	MaxRedirects   int           // default 5

	// AllowPrivateNetworks opens the guard that otherwise refuses loopback,
	// private, link-local, CGNAT, multicast and unspecified addresses.
	AllowPrivateNetworks bool
	// AllowedNetworks are opened even with the guard on: an on-premises
	// image server, say, without opening every private address.
	AllowedNetworks []netip.Prefix
	// AllowedAddrPorts are opened at exactly that address and port (the
	// demo's catalogue server), every other port of the address staying
	// closed.
	AllowedAddrPorts []netip.AddrPort

	UserAgent string // default "tsnemap-loader/1"

	// HostLimiter, if set, bounds the requests to each host beyond this
	// Loader (a cluster's workers together): every download holds one of
	// its permits for its host, besides the MaxPerHost of this Loader.
	HostLimiter HostLimiter

	// LookupIP resolves host names; nil means net.DefaultResolver. Tests set
	// it to resolve names without DNS.
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)

	// TLSConfig for https; nil means the system roots.
	TLSConfig *tls.Config
}

// HostLimiter grants permits to request a host (package jobs: leases
// shared through NATS). Acquire blocks until a permit is free or ctx ends;
// release gives it back.
type HostLimiter interface {
	Acquire(ctx context.Context, host string) (release func(), err error)
}

// ApplyEnv sets AllowPrivateNetworks from EnvAllowPrivateNetworks when it is
// set; getenv is usually os.Getenv.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	v := strings.TrimSpace(getenv(EnvAllowPrivateNetworks))
	if v == "" {
		return nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", EnvAllowPrivateNetworks, v, err)
	}
	c.AllowPrivateNetworks = b
	return nil
}

// DefaultSpoolAbove is Config.SpoolAbove's default: pixels of more than
// 1 GiB go to a temporary file.
const DefaultSpoolAbove = 1 << 30

// SpoolBlock is what a job whose pixels are spooled takes from the memory
// budget for them: the engine reads them back a block of 64 MB at a time
// (embed's rowBlockBytes).
const SpoolBlock = 64 << 20

const (
	defaultMaxRows      = 1_000_000
	defaultMaxColumns   = 1_000
	defaultMaxCellBytes = 64 << 10
	defaultMaxLineBytes = 1 << 20
)

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def64 := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def64(&c.MaxTableBytes, 100<<20)
	def(&c.MaxRows, defaultMaxRows)
	def(&c.MaxColumns, defaultMaxColumns)
	def(&c.MaxCellBytes, defaultMaxCellBytes)
	def(&c.MaxLineBytes, defaultMaxLineBytes)
	def64(&c.MaxFeaturesBytes, 1<<30)
	def64(&c.MaxImageBytes, 50<<20)
	def64(&c.MaxImagePixels, 100_000_000)
	if c.SpoolAbove == 0 {
		c.SpoolAbove = DefaultSpoolAbove
	}
	if c.MemoryBudget <= 0 {
		c.MemoryBudget = DefaultMemoryBudget()
	}
	def(&c.MaxInFlight, 64)
	def(&c.MaxPerHost, 16)
	def(&c.DecodeWorkers, runtime.GOMAXPROCS(0))
	defDur(&c.RequestTimeout, 30*time.Second)
	def(&c.MaxAttempts, 3)
	defDur(&c.RetryBaseDelay, 250*time.Millisecond)
	defDur(&c.MaxRetryAfter, 10*time.Second)
	def(&c.MaxRedirects, 5)
	if c.UserAgent == "" {
		c.UserAgent = "tsnemap-loader/1"
	}
	if c.LookupIP == nil {
		r := net.DefaultResolver
		c.LookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return r.LookupNetIP(ctx, "ip", host)
		}
	}
	return c
}

// Loader fetches tables and images. Build one with New and share it: it
// holds the guarded HTTP transport whose connections are reused between
// calls, and the counters read by Stats. It is safe for concurrent use.
type Loader struct {
	cfg       Config
	mem       *memBudget
	transport *http.Transport
	client    *http.Client

	fullJPEG bool // tests: always use image/jpeg, to compare with the fast path

	stats struct {
		total, loaded, failed, bytes atomic.Int64
	}
}

// New builds a Loader from cfg.
func New(cfg Config) (*Loader, error) {
	cfg = cfg.withDefaults()
	if cfg.MaxPerHost > cfg.MaxInFlight {
		cfg.MaxPerHost = cfg.MaxInFlight
	}
	l := &Loader{cfg: cfg, mem: newMemBudget(cfg.MemoryBudget)}
	g := &guard{allow: cfg.AllowPrivateNetworks, allowed: cfg.AllowedNetworks, allowedPorts: cfg.AllowedAddrPorts, lookup: cfg.LookupIP}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	l.transport = &http.Transport{
		// No Proxy: a proxy would dial on our behalf and defeat the guard.
		Proxy:                 nil,
		DialContext:           g.dialContext(dialer),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4 * cfg.MaxInFlight,
		MaxIdleConnsPerHost:   cfg.MaxPerHost,
		MaxConnsPerHost:       cfg.MaxPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: cfg.RequestTimeout,
		TLSClientConfig:       cfg.TLSConfig.Clone(), // ours: the caller may go on using theirs
	}
	l.client = &http.Client{
		Transport:     sendOnce{l.transport},
		CheckRedirect: l.checkRedirect,
	}
	return l, nil
}

// Close releases idle connections.
func (l *Loader) Close() { l.transport.CloseIdleConnections() }

// Config returns the effective configuration, defaults filled in.
func (l *Loader) Config() Config { return l.cfg }

// Stats are cumulative image counters of a Loader over all its jobs, for
// metrics.
func (l *Loader) Stats() Progress {
	return Progress{
		Total:  l.stats.total.Load(),
		Loaded: l.stats.loaded.Load(),
		Failed: l.stats.failed.Load(),
		Bytes:  l.stats.bytes.Load(),
	}
}

// MemoryInUse is the part of the memory budget held now (for metrics and
// tests).
func (l *Loader) MemoryInUse() int64 { return l.mem.inUse() }
