package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestNATSConfigIsExplicit: a node started with another ack wait than the
// shared one is refused, with a message that says what to do; a node that
// sets none takes the shared one; nats-config changes it.
func TestNATSConfigIsExplicit(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"nats-config", "--data-dir", dir, "--ack-wait", "5s"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "ack wait 5s") {
		t.Fatalf("nats-config: %d %q %q", code, out.String(), errOut.String())
	}
	node := common{dataDir: dir, ackWait: 7 * time.Second}
	if _, _, closeNATS, err := node.connectNATS(ctx, log); err == nil {
		closeNATS()
		t.Fatal("a node with another ack wait was let in")
	} else if !strings.Contains(err.Error(), "ack wait is 5s, this node asks for 7s") || !strings.Contains(err.Error(), "tsnemap nats-config") {
		t.Errorf("refusal: %v", err)
	}
	node.ackWait = 0
	store, _, closeNATS, err := node.connectNATS(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := store.Config().AckWait; got != 5*time.Second {
		t.Errorf("a node setting none runs with ack wait %v, want the shared 5s", got)
	}
	closeNATS()
	out.Reset()
	if code := run(ctx, []string{"nats-config", "--data-dir", dir, "--ack-wait", "7s"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "ack wait 7s") {
		t.Fatalf("nats-config again: %d %q %q", code, out.String(), errOut.String())
	}
}
