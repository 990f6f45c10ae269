package jobs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// selfSigned makes a TLS certificate for 127.0.0.1 and the pool that
// trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tsnemap test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestNATSListenBeyondLoopbackNeedsCredentials: the job store opened on
// the network without credentials let anyone read and change every job
// (API keys moot). Now it is refused; with credentials only clients that
// present them get in; with TLS they connect over TLS.
func TestNATSListenBeyondLoopbackNeedsCredentials(t *testing.T) {
	_, err := StartEmbedded(t.Context(), EmbeddedConfig{DataDir: t.TempDir(), Listen: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "without credentials") {
		t.Fatalf("listen on 0.0.0.0 without credentials: %v", err)
	}
	seed, _ := nkeys.CreateUser()
	seedBytes, _ := seed.Seed()
	cert, pool := selfSigned(t)
	for _, tc := range []struct {
		name string
		auth NATSAuth
		tls  bool
	}{
		{"user and password", NATSAuth{User: "tsnemap", Password: "s3cret-s3cret"}, false},
		{"token", NATSAuth{Token: "tok-0123456789abcdef"}, true},
		{"nkey", NATSAuth{NKeySeed: seedBytes}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := EmbeddedConfig{DataDir: t.TempDir(), Listen: "0.0.0.0:0", Auth: tc.auth}
			var clientTLS *tls.Config
			if tc.tls {
				cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
				clientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			emb, err := StartEmbedded(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer emb.Shutdown()
			// This process's own connection presents the credentials.
			own, err := emb.Connect()
			if err != nil {
				t.Fatalf("in-process connection: %v", err)
			}
			own.Close()
			u, err := neturl.Parse(emb.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			url := "nats://127.0.0.1:" + u.Port()
			var anon []nats.Option
			if clientTLS != nil {
				anon = append(anon, nats.Secure(clientTLS))
			}
			if nc, err := nats.Connect(url, anon...); err == nil {
				nc.Close()
				t.Fatal("a client without credentials got in")
			}
			opts, err := tc.auth.ClientOptions(clientTLS)
			if err != nil {
				t.Fatal(err)
			}
			nc, err := Connect(url, opts...)
			if err != nil {
				t.Fatalf("with credentials: %v", err)
			}
			defer nc.Close()
			if _, err := nc.TLSConnectionState(); tc.tls && err != nil {
				t.Errorf("not TLS: %v", err)
			}
		})
	}
	if err := (NATSAuth{User: "u"}).check(); err == nil {
		t.Error("a user without a password was accepted")
	}
	if err := (NATSAuth{User: "u", Password: "p", Token: "t"}).check(); err == nil {
		t.Error("two kinds of credentials were accepted")
	}
}
