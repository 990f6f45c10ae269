package api

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v4"
)

// hostGuard answers 421 to /v1 and /metrics requests whose Host is not one
// of the names the server answers to. Without it, a web page the user
// visits could reach a local server without keys through DNS rebinding
// (its own name, re-pointed at 127.0.0.1): the browser sends that name as
// Host, which no allow-list of loopback names matches. An IP address as
// Host cannot come from rebinding (that needs a name), so by default any
// address passes.
type hostGuard struct {
	any      bool
	names    map[string]bool
	loopback bool // localhost, *.localhost and any IP address
}

// newHostGuard: the names given ("*" for any), or else, without keys,
// loopback names and IP addresses, and with keys any name (the key is
// what guards).
func newHostGuard(allowed []string, haveKeys bool) *hostGuard {
	g := &hostGuard{names: map[string]bool{}}
	if len(allowed) == 0 {
		g.any, g.loopback = haveKeys, true
		return g
	}
	for _, h := range allowed {
		h = strings.ToLower(strings.Trim(strings.TrimSpace(h), "[]"))
		switch h {
		case "*":
			g.any = true
		case "":
		default:
			g.names[h] = true
		}
	}
	return g
}

func (g *hostGuard) allows(hostport string) bool {
	if g.any {
		return true
	}
	host := strings.ToLower(hostport)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if g.names[host] {
		return true
	}
	if !g.loopback {
		return false
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

func (s *Server) checkHost(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if (isV1(req.URL.Path) || req.URL.Path == "/metrics") && !s.hosts.allows(req.Host) {
			return newProblem(421, "misdirected-request", "Host not allowed",
				fmt.Sprintf("this server does not answer to the host name %q; its operator lists the names it answers to with --allowed-hosts",
					shorten(req.Host, 100)))
		}
		return next(c)
	}
}

// ipExtractor reads the client address from X-Forwarded-For only when the
// request comes from one of the trusted proxies; from anyone else the
// header is ignored (it is whatever the client wrote).
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		_, n, err := net.ParseCIDR(p.Masked().String())
		if err == nil {
			opts = append(opts, echo.TrustIPRange(n))
		}
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// shorten cuts s to at most n bytes (on a rune boundary), marking a cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
