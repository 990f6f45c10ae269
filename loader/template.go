package loader

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// urlTemplate is an image URL template with one or more {id} placeholders.
type urlTemplate struct {
	raw string
	// queryAt is the byte offset of the first '?', or -1: a placeholder in
	// the query is query-escaped, one in the path path-escaped, so that an
	// id holding '/', '?', '#' or '&' stays one value.
	queryAt int
}

var errTemplate = errors.New("image URL template")

func parseTemplate(raw string) (*urlTemplate, error) {
	if !strings.Contains(raw, "{id}") {
		return nil, fmt.Errorf("%w %q has no {id} placeholder", errTemplate, raw)
	}
	u, err := url.Parse(strings.ReplaceAll(raw, "{id}", "x"))
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", errTemplate, raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w %q must be an absolute http or https URL", errTemplate, raw)
	}
	// {id} in the host would let a row's id choose the server.
	authority := raw[strings.Index(raw, "//")+2:]
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	if strings.Contains(authority, "{id}") {
		return nil, fmt.Errorf("%w %q: {id} may not be in the host", errTemplate, raw)
	}
	return &urlTemplate{raw: raw, queryAt: strings.IndexByte(raw, '?')}, nil
}

func (t *urlTemplate) expand(id string) string {
	var b strings.Builder
	rest := t.raw
	off := 0
	for {
		i := strings.Index(rest, "{id}")
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(rest[:i])
		if t.queryAt >= 0 && off+i > t.queryAt {
			b.WriteString(url.QueryEscape(id))
		} else {
			b.WriteString(url.PathEscape(id))
		}
		rest = rest[i+4:]
		off += i + 4
	}
}
