package loader

import (
	"errors"
	"fmt"
	"net/netip"
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
	var quoted []string
	for i, c := range e.Available {
		if i == maxListedColumns {
			quoted = append(quoted, fmt.Sprintf("and %d more", len(e.Available)-i))
			break
		}
		quoted = append(quoted, fmt.Sprintf("%q", Shorten(c, maxNameChars)))
	}
	return fmt.Sprintf("%s column %q not found; the table has %d columns: %s",
		e.Role, Shorten(e.Column, maxNameChars), len(e.Available), strings.Join(quoted, ", "))
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

func (e *AddressError) Error() string {
	if e.Addr.IsValid() && e.Addr.String() != e.Host {
		// The address itself is not told: it is the server's network.
		return fmt.Sprintf("refused: %s resolves to a %s address (private networks are not allowed)", e.Host, e.Reason)
	}
	if e.Addr.IsValid() {
		return fmt.Sprintf("refused: %s is a %s address (private networks are not allowed)", e.Host, e.Reason)
	}
	return fmt.Sprintf("refused: %s: %s", e.Host, e.Reason)
}

func (e *AddressError) Unwrap() error { return ErrForbiddenAddress }
