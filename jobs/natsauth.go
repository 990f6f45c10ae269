package jobs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// NATSAuth is how clients prove themselves to NATS: a user and password,
// a token, or an nkey (the seed; the server is told only its public key).
// At most one kind may be set.
type NATSAuth struct {
	User, Password string
	Token          string
	NKeySeed       []byte
}

// Set says whether any credentials are given.
func (a NATSAuth) Set() bool { return a.User != "" || a.Token != "" || len(a.NKeySeed) > 0 }

func (a NATSAuth) check() error {
	n := 0
	for _, set := range []bool{a.User != "" || a.Password != "", a.Token != "", len(a.NKeySeed) > 0} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return errors.New("NATS credentials: give a user and password, a token or an nkey, not several")
	case (a.User == "") != (a.Password == ""):
		return errors.New("NATS credentials: a user needs a password, and a password a user")
	}
	return nil
}

func (a NATSAuth) keyPair() (nkeys.KeyPair, error) {
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(a.NKeySeed))))
	if err != nil {
		return nil, fmt.Errorf("NATS nkey seed: %w", err)
	}
	return kp, nil
}

// serverOptions makes the server require these credentials.
func (a NATSAuth) serverOptions(opts *server.Options) error {
	switch {
	case a.User != "":
		opts.Username, opts.Password = a.User, a.Password
	case a.Token != "":
		opts.Authorization = a.Token
	case len(a.NKeySeed) > 0:
		kp, err := a.keyPair()
		if err != nil {
			return err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return fmt.Errorf("NATS nkey seed: %w", err)
		}
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	}
	return nil
}

// ClientOptions are the nats.Options that present these credentials and,
// with rootCAs, verify the server's TLS certificate against them (a
// tls:// URL, or a server that requires TLS).
func (a NATSAuth) ClientOptions(tlsConfig *tls.Config) ([]nats.Option, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	var out []nats.Option
	switch {
	case a.User != "":
		out = append(out, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		out = append(out, nats.Token(a.Token))
	case len(a.NKeySeed) > 0:
		kp, err := a.keyPair()
		if err != nil {
			return nil, err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("NATS nkey seed: %w", err)
		}
		out = append(out, nats.Nkey(pub, kp.Sign))
	}
	if tlsConfig != nil {
		out = append(out, nats.Secure(tlsConfig))
	}
	return out, nil
}

// checkListen refuses to open NATS beyond loopback without credentials:
// whoever reaches an open job store can read every job and result and
// submit around the API's keys.
func checkListen(listen, host string, auth NATSAuth) error {
	if auth.Set() || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("start embedded NATS: refusing to listen on %q without credentials: anyone who reaches it could read and change every job; "+
		"give --nats-user and --nats-password, --nats-token or --nats-nkey-seed (and --nats-tls-cert/--nats-tls-key for TLS), or listen on loopback", listen)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.Unmap().IsLoopback()
}
