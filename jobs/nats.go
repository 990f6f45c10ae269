package jobs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Embedded is a NATS server with JetStream running in this process.
type Embedded struct {
	srv  *server.Server
	auth NATSAuth
}

// EmbeddedConfig configures StartEmbedded.
type EmbeddedConfig struct {
	// DataDir holds the JetStream file store; jobs and results survive a
	// restart that reuses it.
	DataDir string
	// Listen, if set (host:port), opens a client port so workers on other
	// machines can join; otherwise the server takes no network connections.
	Listen string
	// MaxStore caps the bytes JetStream may keep in DataDir (0: the
	// server's default, a share of the disk). Past it, writes fail with
	// ErrStoreFull, as on a full disk.
	MaxStore int64
	// Auth, if set, is required of every client (this process's own
	// connection presents it too). Listening beyond loopback needs it.
	Auth NATSAuth
	// TLS, if set, is the server's TLS configuration (its certificate):
	// clients on the network then connect with TLS.
	TLS *tls.Config
}

// StartEmbedded starts an in-process NATS server and waits until it takes
// connections.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("start embedded NATS: data dir is required")
	}
	opts := &server.Options{
		ServerName: "tsnemap",
		JetStream:  true,
		StoreDir:   cfg.DataDir,
		DontListen: cfg.Listen == "",
		NoSigs:     true,
		NoLog:      true,
	}
	if cfg.MaxStore > 0 {
		opts.JetStreamMaxStore = cfg.MaxStore
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("start embedded NATS: listen address %q: %w", cfg.Listen, err)
		}
		if err := checkListen(cfg.Listen, host, cfg.Auth); err != nil {
			return nil, err
		}
		opts.Host = host
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("start embedded NATS: listen port %q: %w", port, err)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	if err := cfg.Auth.check(); err != nil {
		return nil, err
	}
	if err := cfg.Auth.serverOptions(opts); err != nil {
		return nil, err
	}
	if cfg.TLS != nil {
		opts.TLSConfig, opts.TLS = cfg.TLS, true
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded NATS: %w", err)
	}
	srv.Start()
	// ReadyForConnections takes a duration, not a context: honour the
	// context by bounding the wait with its deadline, if any.
	wait := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		return nil, errors.New("start embedded NATS: not ready in time (is the data dir locked by another process?)")
	}
	return &Embedded{srv: srv, auth: cfg.Auth}, nil
}

// Connect opens a client connection to the embedded server, in-process.
func (e *Embedded) Connect() (*nats.Conn, error) {
	opts, err := e.auth.ClientOptions(nil)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect("", append(opts, nats.InProcessServer(e.srv), nats.Name("tsnemap"))...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	return nc, nil
}

// ClientURL is the URL other processes use to reach the server ("" when it
// takes no network connections).
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown stops the server and waits until it has.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Connect opens a connection to an external NATS (a comma-separated list of
// URLs of one cluster). It keeps reconnecting for ever, since a worker
// without NATS has nothing else to do. extra carries credentials and TLS
// (NATSAuth.ClientOptions).
func Connect(url string, extra ...nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name("tsnemap"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false)}, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", url, err)
	}
	return nc, nil
}
