package jobs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Sentinel errors of the package.
var (
	ErrNotFound = errors.New("job not found")
	// ErrConflict: the job is not in a state that allows the operation
	// (e.g. its result is asked for before it succeeded).
	ErrConflict = errors.New("job state conflict")
	// ErrCanceled is the cause of a job context cancelled by DELETE.
	ErrCanceled = errors.New("job canceled")
	// ErrTimeout is the cause of a job context cancelled by timeout_seconds.
	ErrTimeout = errors.New("job timed out")
	// ErrLost is the cause of a job context cancelled because another
	// worker took the job over (this one went silent past the ack wait);
	// the stale worker writes nothing more.
	ErrLost = errors.New("job taken over by another worker")
	// ErrStoreFull: the job store (JetStream) refused a write for want of
	// space: its disk is full or read-only, or its storage limit reached.
	ErrStoreFull = errors.New("job store is out of space")
	// ErrSharedConfig: a node asked for shared settings of the job store
	// (replicas, ack wait) other than those in force; it does not change
	// them unless told to explicitly (Config.Reconfigure).
	ErrSharedConfig = errors.New("the job store's shared settings differ; a node does not change them on its own")
	// ErrShutdown is the cause of a job context cancelled because its worker
	// is stopping; the job is handed back for redelivery.
	ErrShutdown = errors.New("worker shutting down")
)

// storeErr marks the errors of a JetStream write that failed for want of
// space (the server's storage limit reached, its disk full or read-only)
// with ErrStoreFull, so the API can say so instead of a bare 503.
func storeErr(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10002, // account resource limits exceeded
			10023, // insufficient resources
			10047, // insufficient storage resources
			10077: // stream store failed (the file store's own error: ENOSPC, EROFS)
			return fmt.Errorf("%w: %w", ErrStoreFull, err)
		}
	}
	msg := err.Error()
	for _, s := range []string{"no space left", "read-only file system", "insufficient resources", "resource limits exceeded"} {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%w: %w", ErrStoreFull, err)
		}
	}
	return err
}
