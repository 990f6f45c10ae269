package api

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tsnemap/tsnemap/jobs"
)

// sendHost sends a request with the given Host header (and more headers).
func (e *env) sendHost(method, path, host, body string, header ...string) int {
	e.t.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, nil)
	if rd != nil {
		req, _ = http.NewRequest(method, e.srv.URL+path, rd)
		req.Header.Set("Content-Type", "application/json")
	}
	req.Host = host
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == 421 && res.Header.Get("Content-Type") != "application/problem+json" {
		e.t.Errorf("421 as %q", res.Header.Get("Content-Type"))
	}
	return res.StatusCode
}

// TestHostAllowList: without keys the API answers only to loopback names,
// so a page that re-points its own name at 127.0.0.1 (DNS rebinding)
// cannot drive it; --allowed-hosts names others.
func TestHostAllowList(t *testing.T) {
	e := newEnv(t)
	for host, want := range map[string]int{
		"127.0.0.1:8080": 200, "localhost:8080": 200, "LOCALHOST": 200, "[::1]:8080": 200, "app.localhost": 200,
		"127.0.0.2": 200, "evil.example": 421, "evil.example:8080": 421, "localhost.evil.example": 421, "127.0.0.1.nip.io": 421,
		// An address cannot be rebound: a user who types one means it.
		"10.0.0.5:8080": 200, "[::]:8080": 200,
	} {
		if got := e.sendHost("GET", "/v1/jobs", host, ""); got != want {
			t.Errorf("Host %s: %d, want %d", host, got, want)
		}
	}
	// Health and the page are not guarded (probes send any Host).
	if got := e.sendHost("GET", "/healthz", "10.0.0.5", ""); got != 200 {
		t.Errorf("healthz from an address: %d", got)
	}
	if got := e.sendHost("GET", "/metrics", "evil.example", ""); got != 421 {
		t.Errorf("metrics with a foreign Host: %d", got)
	}

	named := newEnvWith(t, jobs.EmbeddedConfig{}, func(c *Config) { c.AllowedHosts = []string{"maps.example.org", "[2001:db8::1]"} })
	for host, want := range map[string]int{"maps.example.org": 200, "MAPS.example.org:443": 200, "[2001:db8::1]:80": 200, "localhost": 421, "evil.example": 421} {
		if got := named.sendHost("GET", "/v1/jobs", host, ""); got != want {
			t.Errorf("allowed-hosts, Host %s: %d, want %d", host, got, want)
		}
	}
	// With keys and no list, any name (the key guards); a list still binds.
	k := keyed(t, nil)
	if got := k.sendHost("GET", "/v1/jobs", "maps.example.org", "", bearerOf(aliceKey)...); got != 200 {
		t.Errorf("keys, any host: %d", got)
	}
}

// TestForwardedForTrustedOnlyFromProxies: the per-client submit limit
// keys on the client address. X-Forwarded-For from a client that is not a
// configured proxy is ignored (before, any client could claim a fresh
// address per request and never be limited).
func TestForwardedForTrustedOnlyFromProxies(t *testing.T) {
	limited := func(c *Config) { c.SubmitRate, c.SubmitBurst = 0.001, 1 }
	e := newEnvWith(t, jobs.EmbeddedConfig{}, limited)
	if got := e.sendHost("POST", "/v1/jobs", "127.0.0.1", okBody, "X-Forwarded-For", "203.0.113.1"); got != 202 {
		t.Fatalf("first submit: %d", got)
	}
	if got := e.sendHost("POST", "/v1/jobs", "127.0.0.1", okBody, "X-Forwarded-For", "203.0.113.2"); got != 429 {
		t.Errorf("second submit claiming another address, from an untrusted peer: %d, want 429", got)
	}
	p := newEnvWith(t, jobs.EmbeddedConfig{}, func(c *Config) {
		limited(c)
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	for i, ip := range []string{"203.0.113.1", "203.0.113.2"} {
		if got := p.sendHost("POST", "/v1/jobs", "127.0.0.1", okBody, "X-Forwarded-For", ip); got != 202 {
			t.Errorf("submit %d through a trusted proxy for %s: %d", i, ip, got)
		}
	}
	if got := p.sendHost("POST", "/v1/jobs", "127.0.0.1", okBody, "X-Forwarded-For", "203.0.113.1"); got != 429 {
		t.Errorf("again for 203.0.113.1 through the proxy: %d", got)
	}
}

// TestNoSniffEverywhere: every answer, JSON, problem, table or page,
// carries X-Content-Type-Options: nosniff.
func TestNoSniffEverywhere(t *testing.T) {
	e := newEnv(t)
	j := e.submit(okBody)
	e.waitStatus(j.Id, "succeeded", 20*time.Second)
	for _, p := range []string{"/healthz", "/v1/jobs", "/v1/jobs/NOPE", "/v1/jobs/" + j.Id + "/result", "/openapi.yaml", "/nothing-here"} {
		res, _ := e.do("GET", p, "")
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s (%d): X-Content-Type-Options %q", p, res.StatusCode, got)
		}
	}
}

// TestMetricsNeedAKeyWhenKeysAreSet: with keys and no metrics token,
// /metrics needs one of the keys (before, it was open to anyone); with
// neither, it is open and the server says so (MetricsOpen).
func TestMetricsNeedAKeyWhenKeysAreSet(t *testing.T) {
	e := keyed(t, func(c *Config) { c.MetricsToken = "" })
	if res, _ := e.do("GET", "/metrics", ""); res.StatusCode != 401 {
		t.Errorf("metrics without a key: %d", res.StatusCode)
	}
	if res, _ := e.do("GET", "/metrics", "", bearerOf("not-a-key-0123456789")...); res.StatusCode != 401 {
		t.Errorf("metrics with a wrong key: %d", res.StatusCode)
	}
	if res, b := e.do("GET", "/metrics", "", bearerOf(bobKey)...); res.StatusCode != 200 {
		t.Errorf("metrics with a key: %d %s", res.StatusCode, b)
	}
	if e.server().MetricsOpen() {
		t.Error("MetricsOpen with keys")
	}
	open := newEnv(t)
	if res, _ := open.do("GET", "/metrics", ""); res.StatusCode != 200 || !open.server().MetricsOpen() {
		t.Errorf("open metrics: %d, MetricsOpen %v", res.StatusCode, open.server().MetricsOpen())
	}
}
