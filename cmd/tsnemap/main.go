// Command tsnemap turns a collection of images into a map. Subcommands:
//
//	tsnemap embed   embed a numeric matrix (features computed elsewhere)
//	tsnemap bench   time the engine's stages on synthetic data
//	tsnemap serve   the HTTP API and a worker
//	tsnemap worker  a worker joining a shared NATS
//	tsnemap run     one job, no server
//	tsnemap version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: tsnemap <command> [flags]

commands:
  embed   embed a numeric matrix (.tsv, .csv or .npy) and write id, x, y (, z)
  bench   time PCA, neighbours, affinities and optimisation on synthetic data
  serve   run the HTTP API and a worker (embedded NATS under --data-dir); --demo maps a demo catalogue
  worker  run jobs from a shared NATS (--nats-url)
  nats-config  change the job store's shared settings (--nats-replicas, --ack-wait) for every node
  run     map one catalogue without a server: tsnemap run --dataset-url URL --image-url-template T -o zegami_tsne.tab
  version print the version

Run 'tsnemap <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "embed":
		err = embedCommand(ctx, args[1:], stdout, stderr)
	case "bench":
		err = benchCommand(ctx, args[1:], stdout, stderr)
	case "serve":
		err = serveCommand(ctx, args[1:], os.Getenv, stdout, stderr)
	case "worker":
		err = workerCommand(ctx, args[1:], os.Getenv, stderr)
	case "nats-config":
		err = natsConfigCommand(ctx, args[1:], os.Getenv, stdout, stderr)
	case "run":
		err = runCommand(ctx, args[1:], os.Getenv, stdout, stderr)
	case "version":
		err = versionCommand(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "tsnemap: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	if err != errUsage {
		// errUsage alone: the flag package has said what was wrong.
		fmt.Fprintf(stderr, "tsnemap %s: %v\n", args[0], err)
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}
