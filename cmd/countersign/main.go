// Command countersign is the one binary: web, worker, migrations, runs,
// policy, audit, demo and benchmarks, with the demo workflows built in.
//
// It is what countersign.Main gives an embedding program, less that
// program's workflows: the run commands here start the demo's, which the
// public API does not expose (their offline model is internal).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/countersign/countersign/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv, cli.Options{Demo: true}))
}
