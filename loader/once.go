package loader

import (
	"io"
	"net/http"
)

// sendOnce is the loader's RoundTripper: each request it is given goes to
// the host at most once, so an image costs at most Config.MaxAttempts
// requests (the loader's own retries) whatever happens on the wire.
//
// Go's http.Transport sends a request again by itself when it failed on a
// reused keep-alive connection and is "replayable": a GET or HEAD whose body
// is nil, or can be had again (GetBody). A host that closes connections
// without answering would then receive every attempt several times. A body
// that is not nil, reads as empty and cannot be had again makes the request
// not replayable; the transport finds it empty before writing and sends a
// plain GET (no body, no Content-Length, no chunking), over HTTP/1 and
// HTTP/2 alike.
type sendOnce struct{ next http.RoundTripper }

func (s sendOnce) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		return s.next.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Body, r.GetBody, r.ContentLength = emptyOnce{}, nil, 0
	return s.next.RoundTrip(r)
}

// emptyOnce is an empty body that cannot be rewound.
type emptyOnce struct{}

func (emptyOnce) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyOnce) Close() error             { return nil }
