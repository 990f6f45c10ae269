package loader

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

func TestParseHostIP(t *testing.T) {
	tests := []struct {
		host string
		want string // "" = not an IP literal
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"2130706433", "127.0.0.1"},   // decimal
		{"017700000001", "127.0.0.1"}, // octal
		{"0x7f000001", "127.0.0.1"},   // hex
		{"0177.0.0.01", "127.0.0.1"},  // octal parts
		{"127.1", "127.0.0.1"},        // short form
		{"10.1.65535", "10.1.255.255"},
		{"0xA9.0xFE.0xA9.0xFE", "169.254.169.254"},
		{"[::1]", "::1"},
		{"::ffff:127.0.0.1", "::ffff:127.0.0.1"},
		{"example.com", ""},
		{"1.2.3.4.5", ""},
		{"256.1.1.1", ""},
		{"08.1.1.1", ""},
		{"", ""},
	}
	for _, tc := range tests {
		a, ok := parseHostIP(tc.host)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tc.want {
			t.Errorf("parseHostIP(%q) = %q, want %q", tc.host, got, tc.want)
		}
	}
}

func TestBlockedReason(t *testing.T) {
	blocked := []string{"127.0.0.1", "127.255.0.9", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1",
		"169.254.169.254", "100.64.0.1", "224.0.0.1", "0.0.0.0", "255.255.255.255", "::",
		"fc00::1", "fd12::1", "fe80::1", "fe80::1%eth0", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
		"64:ff9b::7f00:1", "2002:7f00:1::1", "::127.0.0.1",
		"64:ff9b:1::1", "64:ff9b:1:ffff::a00:1", "64:ff9b:1::808:808", "::ffff:0:7f00:1", "::ffff:0:a00:1",
		"2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::1", "168.63.129.16", "::ffff:168.63.129.16"}
	for _, s := range blocked {
		if r := blockedReason(netip.MustParseAddr(s)); r == "" {
			t.Errorf("%s not blocked", s)
		}
	}
	public := []string{"8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "172.32.0.1", "100.128.0.1", "64:ff9b::808:808", "::ffff:0:808:808", "2001:db8::1", "168.63.129.17"}
	for _, s := range public {
		if r := blockedReason(netip.MustParseAddr(s)); r != "" {
			t.Errorf("%s blocked as %s", s, r)
		}
	}
}

// guardedLoader has the guard on and resolves names only from the map, so
// no test ever asks real DNS or leaves the loopback interface.
func guardedLoader(t *testing.T, names map[string]string, mod func(*Config)) *Loader {
	return newTestLoader(t, func(c *Config) {
		c.AllowPrivateNetworks = false
		c.LookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			if a, ok := names[host]; ok {
				return []netip.Addr{netip.MustParseAddr(a)}, nil
			}
			return nil, fmt.Errorf("test resolver: no such host %q", host)
		}
		if mod != nil {
			mod(c)
		}
	})
}

func TestGuardRefuses(t *testing.T) {
	var hits atomic.Int64
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("id\n1\n"))
	}))
	port := s.URL[strings.LastIndexByte(s.URL, ':')+1:]
	l := guardedLoader(t, map[string]string{"rebind.test": "127.0.0.1", "mapped.test": "::ffff:127.0.0.1"}, nil)
	hosts := []string{
		"127.0.0.1", "[::1]", "10.0.0.1", "169.254.169.254", "rebind.test", "mapped.test",
		"[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "2130706433", "017700000001", "0x7f.1", "127.1", "0.0.0.0",
	}
	for _, h := range hosts {
		u := "http://" + h + ":" + port + "/t.tsv"
		_, err := l.FetchTable(ctxT(t), u, TableOptions{ImageURLTemplate: "http://h.example/{id}"})
		if !errors.Is(err, ErrForbiddenAddress) || !errors.Is(err, ErrDatasetUnreachable) {
			t.Errorf("%s: got %v, want a guard refusal", h, err)
		}
		if err := l.ValidateURL(ctxT(t), u); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("ValidateURL(%s) = %v", u, err)
		}
	}
	var ae *AddressError
	_, err := l.FetchTable(ctxT(t), "http://rebind.test:"+port+"/", TableOptions{ImageURLTemplate: "http://h/{id}"})
	if !errors.As(err, &ae) || ae.Reason != "loopback" || ae.Addr.String() != "127.0.0.1" {
		t.Errorf("AddressError: %#v from %v", ae, err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server saw %d requests through the guard", n)
	}
	// The same loader, guard open: the server is reachable (the refusals
	// above were the guard, not a dead server).
	open := newTestLoader(t, nil)
	if _, err := open.FetchTable(ctxT(t), "http://2130706433:"+port+"/", TableOptions{ImageURLTemplate: "http://h/{id}"}); err != nil {
		t.Errorf("guard open: %v", err)
	}
}

func TestGuardRefusesImagesAndRedirects(t *testing.T) {
	jpg := encJPEG(t, halves(32, 32, red, blue), 90)
	target := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(jpg) }))
	// The front server listens on 127.0.0.2, which the guard lets through
	// alone; it redirects to 127.0.0.1, which must be refused.
	front := serveOn(t, "127.0.0.2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, target.URL+"/img.jpg", http.StatusFound)
		case "/redirect-decimal":
			http.Redirect(w, r, strings.Replace(target.URL, "127.0.0.1", "2130706433", 1)+"/img.jpg", http.StatusFound)
		default:
			_, _ = w.Write(jpg)
		}
	}))
	l := guardedLoader(t, nil, func(c *Config) { c.AllowedNetworks = prefix("127.0.0.2/32") })
	rows := []Row{
		{ID: "ok", ImageURL: front.URL + "/ok.jpg"},
		{ID: "redir", ImageURL: front.URL + "/redirect"},
		{ID: "redir-dec", ImageURL: front.URL + "/redirect-decimal"},
		{ID: "direct", ImageURL: target.URL + "/img.jpg"},
		{ID: "metadata", ImageURL: "http://169.254.169.254/latest/meta-data/"},
		{ID: "scheme", ImageURL: "file:///etc/passwd"},
	}
	im, err := l.LoadImages(ctxT(t), rows, ImageOptions{Width: 8, Height: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if im.Len() != 1 || im.Rows[0] != 0 {
		t.Fatalf("loaded rows %v, want [0]", im.Rows)
	}
	for _, f := range im.Failures {
		if !strings.Contains(f.Reason, "refused") && !strings.Contains(f.Reason, "scheme") {
			t.Errorf("row %d (%s): reason %q, want a refusal", f.Row, f.ID, f.Reason)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	env := map[string]string{EnvAllowPrivateNetworks: "true"}
	var c Config
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil || !c.AllowPrivateNetworks {
		t.Errorf("true: %v %v", err, c.AllowPrivateNetworks)
	}
	env[EnvAllowPrivateNetworks] = "0"
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil || c.AllowPrivateNetworks {
		t.Errorf("0: %v %v", err, c.AllowPrivateNetworks)
	}
	env[EnvAllowPrivateNetworks] = "perhaps"
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err == nil {
		t.Error("perhaps: no error")
	}
}

func TestValidateURLAllowsPublic(t *testing.T) {
	l := guardedLoader(t, map[string]string{"public.test": "93.184.216.34"}, nil)
	if err := l.ValidateURL(ctxT(t), "https://public.test/table.tsv"); err != nil {
		t.Errorf("public host refused: %v", err)
	}
	for _, u := range []string{"ftp://public.test/x", "https://user:pw@public.test/x", "http:///x"} {
		if err := l.ValidateURL(ctxT(t), u); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// TestRefusalsHideInternalAddresses: a refused name does not echo the
// private address it resolved to, and a DNS failure does not name the
// server's resolver.
func TestRefusalsHideInternalAddresses(t *testing.T) {
	l := newTestLoader(t, func(c *Config) {
		c.AllowPrivateNetworks = false
		c.LookupIP = func(_ context.Context, host string) ([]netip.Addr, error) {
			if host == "intranet.example" {
				return []netip.Addr{netip.MustParseAddr("10.1.2.3")}, nil
			}
			return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.0.0.2:53", IsNotFound: true}
		}
	})
	for _, u := range []string{"http://intranet.example/t.tsv", "http://nowhere.example/t.tsv"} {
		err := l.ValidateURL(t.Context(), u)
		if err == nil || strings.Contains(err.Error(), "10.1.2.3") || strings.Contains(err.Error(), "10.0.0.2") {
			t.Errorf("%s: %v", u, err)
		}
		_, err = l.FetchTable(t.Context(), u, TableOptions{ImageURLTemplate: "http://h.example/{id}"})
		if err == nil || strings.Contains(err.Error(), "10.1.2.3") || strings.Contains(err.Error(), "10.0.0.2") {
			t.Errorf("fetch %s: %v", u, err)
		}
	}
}

// TestAllowedAddrPortOpensOnePort: opening the guard for one address and
// port (the demo's server) lets that port be fetched, at dial time too,
// and no other port of the same address.
func TestAllowedAddrPortOpensOnePort(t *testing.T) {
	ok := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("id\n1\n")) }))
	other := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("id\n1\n")) }))
	ap := netip.MustParseAddrPort(strings.TrimPrefix(ok.URL, "http://"))
	l := newTestLoader(t, func(c *Config) { c.AllowPrivateNetworks = false; c.AllowedAddrPorts = []netip.AddrPort{ap} })
	opts := TableOptions{ImageURLTemplate: "http://h.example/{id}"}
	if _, err := l.FetchTable(t.Context(), ok.URL+"/t.tsv", opts); err != nil {
		t.Errorf("the opened port: %v", err)
	}
	if _, err := l.FetchTable(t.Context(), other.URL+"/t.tsv", opts); !errors.Is(err, ErrForbiddenAddress) && (err == nil || !strings.Contains(err.Error(), "loopback")) {
		t.Errorf("another port of the same address: %v", err)
	}
	if err := l.ValidateURL(t.Context(), other.URL+"/t.tsv"); err == nil {
		t.Error("ValidateURL let another port through")
	}
}
