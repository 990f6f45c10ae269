package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// natsConfigCommand changes the settings every node of an installation
// shares (the replicas of the stream and buckets, the consumer's ack
// wait). Nodes never change them on start-up: one started with other
// flags is refused, so a change is this explicit act.
func natsConfigCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tsnemap nats-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := common{reconfigure: true, logFormat: "text", logLevel: "warn"}
	fs.StringVar(&c.natsURL, "nats-url", "", "the shared NATS (comma-separated URLs of one cluster)")
	fs.StringVar(&c.dataDir, "data-dir", "tsnemap-data", "without --nats-url: the embedded NATS's store (stop 'tsnemap serve' first)")
	fs.IntVar(&c.natsReplicas, "nats-replicas", 0, "replicas of the stream and buckets (0: leave as they are)")
	fs.DurationVar(&c.ackWait, "ack-wait", 0, "how long a silent worker's job waits before another worker takes it (0: leave as it is)")
	fs.Usage = usageWithEnv(fs, stderr, "usage: tsnemap nats-config [--nats-url URL | --data-dir DIR] [--nats-replicas N] [--ack-wait D]\n\nChanges the job store's shared settings for every node; prints them.\n\nflags:\n")
	if err := parseWithEnv(fs, args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	if c.natsReplicas < 0 || c.ackWait < 0 || (c.ackWait > 0 && c.ackWait < time.Second) {
		fmt.Fprintln(stderr, "tsnemap nats-config: --nats-replicas must be ≥ 0 and --ack-wait 0 or at least 1s")
		return errUsage
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	store, _, closeNATS, err := c.connectNATS(ctx, log)
	if err != nil {
		return err
	}
	defer closeNATS()
	cfg := store.Config()
	fmt.Fprintf(stdout, "replicas %d, ack wait %v\n", cfg.Replicas, cfg.AckWait)
	return nil
}
