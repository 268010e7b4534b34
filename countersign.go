package countersign

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/cli"
)

// Option changes what [Main] and [Run] give the program; [WithModel] makes one.
type Option struct {
	apply func(*settings)
}

// settings are what the options set.
type settings struct {
	model ai.Provider
}

// WithModel makes p the provider that [Generate] calls in every process the
// command line starts, in place of the one COUNTERSIGN_MODEL_PROVIDER
// configures.
func WithModel(p ModelProvider) Option {
	return Option{apply: func(s *settings) { s.model = p }}
}

// Main runs the countersign command line with the program's workflows, on
// os.Args, the standard streams and the environment, and exits with its exit
// code: 0 on success, 1 when a command failed, 2 for a usage or configuration
// mistake. SIGINT and SIGTERM stop a command gracefully (serve drains its
// requests and lets running jobs finish for a while). It never returns.
func Main(reg *Registry, opts ...Option) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv, reg, opts...)
	stop()
	os.Exit(code)
}

// Run runs the command line on args (without the program's name) with the
// given streams and environment lookup until the command ends or ctx is
// cancelled (which stops serve gracefully), and returns the exit code as
// [Main] describes it. Tests run a program's command line through it. A nil
// reg registers no workflows.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string, reg *Registry, opts ...Option) int {
	var s settings
	for _, o := range opts {
		if o.apply != nil {
			o.apply(&s)
		}
	}
	co := cli.Options{Model: s.model}
	if reg != nil {
		co.Workflows = reg.r
	}
	return cli.Main(ctx, args, stdin, stdout, stderr, getenv, co)
}
