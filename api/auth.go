package api

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/oapi-codegen/runtime"

	"github.com/tsnemap/tsnemap/jobs"
)

// Key is an API key: the name its jobs are recorded under, and the secret
// clients send as `Authorization: Bearer <secret>`.
type Key struct {
	Name   string
	Secret string
}

// ParseKeys reads a keys file: one key a line, either `name:key` or a bare
// key (named by a short hash of it, so the key itself is never stored or
// logged). Blank lines and lines starting with # are skipped.
func ParseKeys(r io.Reader) ([]Key, error) {
	var keys []Key
	names, secrets := map[string]int{}, map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k := Key{Secret: line}
		if name, secret, ok := strings.Cut(line, ":"); ok {
			k = Key{Name: strings.TrimSpace(name), Secret: strings.TrimSpace(secret)}
		}
		if k.Name == "" {
			sum := sha256.Sum256([]byte(k.Secret))
			k.Name = "key-" + hex.EncodeToString(sum[:4])
		}
		switch {
		case len(k.Secret) < 16:
			return nil, fmt.Errorf("keys file line %d: key %q is shorter than 16 characters; use a long random key (e.g. openssl rand -hex 24)", n, k.Name)
		case strings.ContainsAny(k.Secret, " \t"):
			return nil, fmt.Errorf("keys file line %d: key %q contains white space", n, k.Name)
		}
		if prev, ok := names[k.Name]; ok {
			return nil, fmt.Errorf("keys file line %d: name %q is already used on line %d", n, k.Name, prev)
		}
		if prev, ok := secrets[k.Secret]; ok {
			return nil, fmt.Errorf("keys file line %d: the same key is already on line %d", n, prev)
		}
		names[k.Name], secrets[k.Secret] = n, n
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read keys file: %w", err)
	}
	if len(keys) == 0 {
		return nil, errors.New("keys file has no keys")
	}
	return keys, nil
}

// keyring finds the key of a bearer token in constant time: every key is
// compared (as SHA-256 digests, so lengths leak nothing either), whichever
// matches.
type keyring struct {
	names   []string
	digests [][sha256.Size]byte
}

func newKeyring(keys []Key) *keyring {
	r := &keyring{}
	for _, k := range keys {
		r.names = append(r.names, k.Name)
		r.digests = append(r.digests, sha256.Sum256([]byte(k.Secret)))
	}
	return r
}

func (r *keyring) lookup(token string) (string, bool) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range r.digests {
		if subtle.ConstantTimeCompare(d[:], r.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return r.names[found], true
}

func bearer(req *http.Request) (string, bool) {
	h := req.Header.Get(echo.HeaderAuthorization)
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// ownerKey is where authenticate leaves the caller's key name.
const ownerKey = "tsnemap.owner"

// owner is the name of the key that made the request ("" without keys).
func owner(c echo.Context) string {
	o, _ := c.Get(ownerKey).(string)
	return o
}

func isV1(path string) bool { return path == "/v1" || strings.HasPrefix(path, "/v1/") }

// authenticate guards every /v1 route, whatever its handler: with keys, the
// request needs a known bearer key, and a route naming a job (`:id`) under
// /v1/jobs is answered 404 unless the job is the key's. /metrics may need
// its own token. Everything else (health, spec, the web page) stays open.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		path := c.Request().URL.Path
		if path == "/metrics" && s.cfg.MetricsToken != "" {
			tok, _ := bearer(c.Request())
			want := sha256.Sum256([]byte(s.cfg.MetricsToken))
			got := sha256.Sum256([]byte(tok))
			if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
				return unauthorized(c, "/metrics needs the metrics token in Authorization: Bearer <token>")
			}
			return next(c)
		}
		if path == "/metrics" && s.keys != nil {
			// No token of its own: the API's keys guard it, as they
			// guard the jobs whose counts it shows.
			if tok, ok := bearer(c.Request()); !ok || !s.keyOK(tok) {
				return unauthorized(c, "/metrics needs an API key (or the server's --metrics-token) in Authorization: Bearer <key>")
			}
			return next(c)
		}
		if !isV1(path) || s.keys == nil {
			return next(c)
		}
		tok, ok := bearer(c.Request())
		if !ok {
			return unauthorized(c, "this server needs an API key: send Authorization: Bearer <key>")
		}
		name, ok := s.keys.lookup(tok)
		if !ok {
			return unauthorized(c, "the API key is not one of this server's keys")
		}
		c.Set(ownerKey, name)
		if err := s.checkOwner(c, name); err != nil {
			return err
		}
		return next(c)
	}
}

// checkOwner answers 404 unless the job a route names (its `:id`) is the
// key's. It checks the id the handler will get: the generated wrapper
// decodes the path segment (`%30…` is `0…`), so the owner is looked up
// under the decoded id, never the raw spelling. An id that does not decode
// to a valid job id names no job of anyone's.
func (s *Server) checkOwner(c echo.Context, name string) error {
	if !hasParam(c, "id") {
		return nil
	}
	var id string
	err := runtime.BindStyledParameterWithOptions("simple", "id", c.Param("id"), &id, runtime.BindStyledParameterOptions{
		ParamLocation: runtime.ParamLocationPath, Required: true, Type: "string",
		ValueIsUnescaped: c.Request().URL.RawPath == ""})
	if err != nil || !jobs.ValidID(id) {
		return jobError(c.Param("id"), jobs.ErrNotFound)
	}
	job, err := s.cfg.Jobs.Get(c.Request().Context(), id)
	if errors.Is(err, jobs.ErrNotFound) || (err == nil && job.Owner != name) {
		// The same answer as for a job that does not exist: another
		// key's job ids are not even confirmed.
		return jobError(id, jobs.ErrNotFound)
	}
	return err
}

// hasParam says whether the matched route has a path parameter name (an
// empty value counts: `/v1/jobs//result` names a job too).
func hasParam(c echo.Context, name string) bool {
	for _, n := range c.ParamNames() {
		if n == name {
			return true
		}
	}
	return false
}

func (s *Server) keyOK(tok string) bool {
	_, ok := s.keys.lookup(tok)
	return ok
}

func unauthorized(c echo.Context, detail string) error {
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="tsnemap"`)
	return newProblem(http.StatusUnauthorized, "unauthorized", "Unauthorized", detail)
}

// tooMany is a 429 with Retry-After.
func tooMany(c echo.Context, after time.Duration, detail string) error {
	secs := int(math.Ceil(after.Seconds()))
	c.Response().Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	return newProblem(http.StatusTooManyRequests, "too-many-requests", "Too many requests", detail)
}

// submitterID names whose submit budget a request spends: its key, or
// its client address on a server without keys.
func (s *Server) submitterID(c echo.Context) string {
	if s.keys != nil {
		return "key:" + owner(c)
	}
	return "ip:" + c.RealIP()
}
