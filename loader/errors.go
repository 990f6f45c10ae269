package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// Sentinel errors. The service maps them to job error codes with errors.Is:
// ErrDatasetUnreachable → dataset_unreachable, ErrDatasetInvalid →
// dataset_invalid, ErrNoImages → no_images. The finer sentinels below are
// always wrapped together with one of those three.
var (
	// ErrDatasetUnreachable: the table could not be fetched (network error,
	// HTTP status, guard refusal, too large).
	ErrDatasetUnreachable = errors.New("dataset unreachable")
	// ErrDatasetInvalid: the table was fetched but cannot be used (no
	// header, unknown column, bad template, no rows left).
	ErrDatasetInvalid = errors.New("dataset invalid")
	// ErrNoImages: every image of the job failed.
	ErrNoImages = errors.New("no images could be loaded")

	// ErrTooLarge: a byte, row or pixel limit was exceeded.
	ErrTooLarge = errors.New("too large")
	// ErrForbiddenAddress: the private-network guard refused a URL.
	ErrForbiddenAddress = errors.New("address not allowed")
	// ErrTooManyColumns, ErrCellTooLong, ErrLineTooLong: the table passes
	// a limit of Config (MaxColumns, MaxCellBytes, MaxLineBytes); wrapped
	// with ErrTooLarge and ErrDatasetInvalid.
	ErrTooManyColumns = errors.New("too many columns")
	ErrCellTooLong    = errors.New("value too long")
	ErrLineTooLong    = errors.New("line too long")
	// ErrUnknownColumn: a named column is not in the header (see *ColumnError).
	ErrUnknownColumn = errors.New("unknown column")
)

// ColumnError names a column that is not in the table and the columns that
// are, so that the user can fix the request without opening the file.
type ColumnError struct {
	Role      string // "id" or "image URL"
	Column    string
	Available []string
}

// The message is bounded, whatever the header: it names at most
// maxListedColumns columns, each cut to maxNameChars characters.
const (
	maxListedColumns = 20
	maxNameChars     = 64
)

func (e *ColumnError) Error() string {
	return fmt.Sprintf("%s column %q not found; the table has %d columns: %s",
		e.Role, Shorten(e.Column, maxNameChars), len(e.Available), columnList(e.Available))
}

// columnList quotes column names for a message, bounded whatever the
// header: at most maxListedColumns names, each cut to maxNameChars.
func columnList(names []string) string {
	var quoted []string
	for i, c := range names {
		if i == maxListedColumns {
			quoted = append(quoted, fmt.Sprintf("and %d more", len(names)-i))
			break
		}
		quoted = append(quoted, fmt.Sprintf("%q", Shorten(c, maxNameChars)))
	}
	return strings.Join(quoted, ", ")
}

// Shorten cuts s to at most n runes, marking a cut with "…".
func Shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	k := 0
	for i := range s {
		if k == n-1 {
			return s[:i] + "…"
		}
		k++
	}
	return s
}

// Unwrap lets errors.Is match both ErrUnknownColumn and ErrDatasetInvalid.
func (e *ColumnError) Unwrap() []error { return []error{ErrUnknownColumn, ErrDatasetInvalid} }

// AddressError is the private-network guard's refusal.
type AddressError struct {
	Host   string     // as written in the URL
	Addr   netip.Addr // the address it resolved to (zero if not resolved)
	Reason string     // "loopback", "private", "link-local", ...
}

// allowPrivate says how to lift the guard's refusal.
const allowPrivate = "private networks are refused unless tsnemap runs with --allow-private-networks, or " + EnvAllowPrivateNetworks + "=true"

func (e *AddressError) Error() string {
	if e.Addr.IsValid() && e.Addr.String() != e.Host {
		// The address itself is not told: it is the server's network.
		return fmt.Sprintf("refused: %s resolves to a %s address (%s)", e.Host, e.Reason, allowPrivate)
	}
	if e.Addr.IsValid() {
		return fmt.Sprintf("refused: %s is a %s address (%s)", e.Host, e.Reason, allowPrivate)
	}
	return fmt.Sprintf("refused: %s: %s", e.Host, e.Reason)
}

func (e *AddressError) Unwrap() error { return ErrForbiddenAddress }

// Reason is err's message without the sentinel it starts with ("dataset
// invalid: ", "dataset unreachable: "), for callers that report the
// sentinel as a code of their own (the job's error code).
func Reason(err error) string {
	msg := err.Error()
	for _, s := range []error{ErrDatasetInvalid, ErrDatasetUnreachable} {
		if errors.Is(err, s) {
			msg = strings.TrimPrefix(msg, s.Error()+": ")
		}
	}
	return msg
}

// urlError is a refusal of a URL in words; it matches ErrForbiddenAddress
// without starting with its text.
type urlError struct{ msg string }

func (e *urlError) Error() string { return e.msg }
func (e *urlError) Unwrap() error { return ErrForbiddenAddress }

func urlErrorf(format string, args ...any) error { return &urlError{msg: fmt.Sprintf(format, args...)} }

// ParseURL reads a URL the loader may fetch: absolute, http or https, with
// a host and no credentials. Its errors are sentences that say what to
// write instead (and wrap ErrForbiddenAddress).
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return nil, urlErrorf("the URL is empty; give an http(s) URL such as https://example.org/data.tab")
	case !strings.Contains(raw, "://") && (err != nil || !isOpaqueScheme(u)):
		return nil, urlErrorf("%q has no scheme; write the URL in full, starting with https:// or http:// (e.g. https://%s)",
			raw, strings.TrimLeft(raw, "/"))
	case err != nil:
		return nil, urlErrorf("%q is not a valid URL (%v)", raw, unwrapURLError(err))
	}
	return u, checkURLShape(u)
}

// isOpaqueScheme tells a URL with a scheme and no "//" (mailto:x, data:x)
// from a host and port written without a scheme (example.org:8080/x,
// localhost:8080), which url.Parse also reads as a scheme.
func isOpaqueScheme(u *url.URL) bool {
	if u.Scheme == "" || strings.Contains(u.Scheme, ".") || u.Scheme == "localhost" {
		return false
	}
	return u.Opaque == "" || u.Opaque[0] < '0' || u.Opaque[0] > '9'
}

// checkURLShape refuses schemes other than http(s), missing hosts and
// credentials, in words.
func checkURLShape(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return urlErrorf("%q uses the scheme %q; only http and https URLs can be fetched", u.Redacted(), u.Scheme)
	}
	if u.Hostname() == "" {
		return urlErrorf("%q has no host; write it as %s://host/path", u.Redacted(), u.Scheme)
	}
	if u.User != nil {
		return urlErrorf("%q carries a user name or password, which the loader does not send; put the file where it can be fetched without them", u.Redacted())
	}
	return nil
}
