package loader

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// guard refuses connections to addresses a public service must never reach
// on a user's behalf. It works at dial time, on the address actually dialled,
// so a DNS answer that changes between a check and the connection (DNS
// rebinding) cannot slip past; every redirect dials through it again.
type guard struct {
	allow        bool
	allowed      []netip.Prefix
	allowedPorts []netip.AddrPort // one port of an address, not all of it
	lookup       func(ctx context.Context, host string) ([]netip.Addr, error)
}

// Ranges refused by default. Sources: RFC 1122 (0/8, loopback), RFC 1918,
// RFC 6598 (CGNAT), RFC 3927 (link-local, which holds the cloud metadata
// address 169.254.169.254), RFC 5771 (multicast), RFC 1112 (240/4 and
// broadcast), RFC 6890 (192.0.0.0/24, 198.18/15), RFC 4193 (unique-local),
// RFC 4291 (IPv6 loopback, link-local, multicast), RFC 3879 (site-local).
var blockedPrefixes = func() []struct {
	p      netip.Prefix
	reason string
} {
	list := []struct{ cidr, reason string }{
		{"0.0.0.0/8", "unspecified"},
		{"10.0.0.0/8", "private"},
		{"100.64.0.0/10", "shared (CGNAT)"},
		{"127.0.0.0/8", "loopback"},
		{"169.254.0.0/16", "link-local"},
		{"172.16.0.0/12", "private"},
		{"192.0.0.0/24", "reserved"},
		{"192.168.0.0/16", "private"},
		{"198.18.0.0/15", "reserved"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved"},
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"fc00::/7", "private (unique-local)"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local"},
		{"ff00::/8", "multicast"},
		// RFC 8215: NAT64 for local use, translating to any IPv4 address,
		// private ones included, by the operator's choice.
		{"64:ff9b:1::/48", "NAT64 (local use)"},
		// RFC 4380: Teredo tunnels to an IPv4 address hidden in the bits.
		{"2001::/32", "Teredo tunnel"},
		// Azure's host endpoint (wireserver), which serves metadata and
		// credentials to the machine it runs on.
		{"168.63.129.16/32", "cloud metadata"},
	}
	out := make([]struct {
		p      netip.Prefix
		reason string
	}, len(list))
	for i, e := range list {
		out[i].p = netip.MustParsePrefix(e.cidr)
		out[i].reason = e.reason
	}
	return out
}()

// The blocked-prefix table is read-only after package initialisation.

var (
	nat64Prefix  = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour    = netip.MustParsePrefix("2002::/16")
	v4Compatible = netip.MustParsePrefix("::/96")
	// RFC 2765 (SIIT): IPv4-translated addresses, ::ffff:0:a.b.c.d.
	v4Translated = netip.MustParsePrefix("::ffff:0:0:0/96")
)

// blockedReason says why addr must not be dialled, or "" if it may.
// IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4)
// are judged by the IPv4 address inside.
func blockedReason(addr netip.Addr) string {
	addr = addr.WithZone("").Unmap()
	if addr.Is6() {
		b := addr.As16()
		switch {
		case nat64Prefix.Contains(addr), v4Translated.Contains(addr),
			v4Compatible.Contains(addr) && addr != netip.IPv6Unspecified() && addr != netip.IPv6Loopback():
			if r := blockedReason(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
				return r
			}
		case sixToFour.Contains(addr):
			if r := blockedReason(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
				return r
			}
		}
	}
	for _, e := range blockedPrefixes {
		if e.p.Contains(addr) {
			return e.reason
		}
	}
	return ""
}

// parseHostIP reads a host that is an IP address in any form a C library's
// inet_aton would accept — dotted quad, but also a single decimal, octal or
// hex number ("2130706433", "017700000001", "0x7f.1") — so that such forms
// are judged as the addresses they denote instead of being sent to DNS.
func parseHostIP(host string) (netip.Addr, bool) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return a, true
	}
	parts := strings.Split(h, ".")
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, false
		}
		base := 10
		switch {
		case len(p) > 2 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	// The last part fills all remaining bytes: a.b.c.d, a.b.cd, a.bcd, abcd.
	var n uint64
	last := len(vals) - 1
	for i := 0; i < last; i++ {
		if vals[i] > 255 {
			return netip.Addr{}, false
		}
		n = n<<8 | vals[i]
	}
	rest := uint(4-last) * 8
	if vals[last] >= 1<<rest {
		return netip.Addr{}, false
	}
	n = n<<rest | vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// checkPort is check with the port known: an address opened at one port
// (AllowedAddrPorts) passes there only.
func (g *guard) checkPort(host string, addr netip.Addr, port uint16) error {
	for _, ap := range g.allowedPorts {
		if ap.Port() == port && ap.Addr().Unmap() == addr.WithZone("").Unmap() {
			return nil
		}
	}
	return g.check(host, addr)
}

func (g *guard) check(host string, addr netip.Addr) error {
	if g.allow {
		return nil
	}
	for _, p := range g.allowed {
		if p.Contains(addr.WithZone("").Unmap()) {
			return nil
		}
	}
	if r := blockedReason(addr); r != "" {
		return &AddressError{Host: host, Addr: addr.WithZone("").Unmap(), Reason: r}
	}
	return nil
}

// resolve turns a host into addresses, refusing the host if any of them is
// blocked: a name that answers with one public and one private address is
// refused rather than half-trusted.
func (g *guard) resolve(ctx context.Context, host string, port uint16) ([]netip.Addr, error) {
	if a, ok := parseHostIP(host); ok {
		return []netip.Addr{a}, g.checkPort(host, a, port)
	}
	addrs, err := g.lookup(ctx, host)
	if err != nil {
		return nil, withoutResolver(err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address for host %q", host)
	}
	for _, a := range addrs {
		if err := g.checkPort(host, a, port); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

// withoutResolver drops the resolver's address from a DNS error ("lookup
// x on 10.0.0.2:53: ..."): it is the server's internal network, not the
// user's business.
func withoutResolver(err error) error {
	var de *net.DNSError
	if !errors.As(err, &de) || de.Server == "" {
		return err
	}
	c := *de
	c.Server = ""
	return &c
}

func (g *guard) dialContext(d *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		pn, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("guard: port %q: %w", port, err)
		}
		addrs, err := g.resolve(ctx, host, uint16(pn))
		if err != nil {
			return nil, err
		}
		var firstErr error
		for _, a := range addrs {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			if firstErr == nil {
				firstErr = err
			}
			if ctx.Err() != nil {
				break
			}
		}
		return nil, firstErr
	}
}

// control is the last line: it sees the socket address the kernel is about
// to connect to, whatever produced it.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("guard: unexpected dial address %q: %w", address, err)
	}
	return g.checkPort(ap.Addr().String(), ap.Addr(), ap.Port())
}

// urlPort is the port a URL is fetched on (its scheme's when not given).
func urlPort(u *url.URL) uint16 {
	if p, err := strconv.ParseUint(u.Port(), 10, 16); err == nil {
		return uint16(p)
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

// checkURL refuses what may never be fetched before any connection: schemes
// other than http(s), missing hosts, and literal addresses the guard blocks.
func (l *Loader) checkURL(u *url.URL) error {
	if err := checkURLShape(u); err != nil {
		return err
	}
	if a, ok := parseHostIP(u.Hostname()); ok {
		g := guard{allow: l.cfg.AllowPrivateNetworks, allowed: l.cfg.AllowedNetworks, allowedPorts: l.cfg.AllowedAddrPorts}
		return g.checkPort(u.Hostname(), a, urlPort(u))
	}
	return nil
}

// ValidateURL says whether the Loader would fetch rawURL: scheme, host, and
// the guard on every address the host resolves to now. The service calls it
// when a job is submitted; the dial-time check still runs at fetch time.
func (l *Loader) ValidateURL(ctx context.Context, rawURL string) error {
	u, err := ParseURL(rawURL)
	if err != nil {
		return err
	}
	if err := l.checkURL(u); err != nil {
		return err
	}
	g := guard{allow: l.cfg.AllowPrivateNetworks, allowed: l.cfg.AllowedNetworks, allowedPorts: l.cfg.AllowedAddrPorts, lookup: l.cfg.LookupIP}
	_, err = g.resolve(ctx, u.Hostname(), urlPort(u))
	return err
}

var errTooManyRedirects = errors.New("too many redirects")

func (l *Loader) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > l.cfg.MaxRedirects {
		return fmt.Errorf("%w (more than %d)", errTooManyRedirects, l.cfg.MaxRedirects)
	}
	return l.checkURL(req.URL)
}
