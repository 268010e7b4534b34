// Package cli is the countersign command line: every command, its flags,
// help and exit codes. cmd/countersign and countersign.Main run it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/tracing"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/migrations"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed (a check failed, a run was not found)
	exitUsage = 2 // bad flags, arguments or configuration
)

// Options are what a binary adds to the command line: countersign.Main passes
// an embedding program's workflows and model, cmd/countersign the demo's.
type Options struct {
	// Workflows are the binary's workflows: serve runs them, the run
	// commands start them and run start --help lists them.
	Workflows *workflow.Registry
	// Demo adds the demo workflows to the run commands (the countersign
	// binary, whose runs are the demo's); the demo command always has them
	// and serve never does.
	Demo bool
	// Model, when set, is the provider that model steps call, in place of
	// the one COUNTERSIGN_MODEL_PROVIDER configures.
	Model ai.Provider
}

// env is what every command gets.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	opts   Options
}

// usageError is a mistake in how the command was called: exit code 2. It
// keeps the error it was made from, so callers can still match its cause.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError ends the command with its own exit code, for a command whose
// codes say more than success and failure (ask's 3: still pending).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// command is one subcommand.
type command struct {
	summary string
	run     func(e *env, args []string) error
}

// commands is the whole command line, in one place; groups list their
// subcommands in the order their usage errors name them.
var commands map[string]command

func init() {
	commands = map[string]command{
		"ask":     {"file an action for approval and wait for the decision (exit 0 approved, 1 refused, 3 pending)", cmdAsk},
		"migrate": {"create the database if missing and apply River's and Countersign's migrations", cmdMigrate},
		"serve":   {"run the web console and API and the workers (--web-only, --worker-only)", cmdServe},
		"run": {"start, show, list, cancel, signal, export and replay workflow runs", group{"run", []subcommand{
			{"start", "start a run, or find the one with its business key", cmdRunStart},
			{"show", "print a run with its steps and requests as JSON", cmdRunShow},
			{"list", "list runs, newest first", cmdRunList},
			{"cancel", "cancel a run that has not ended", cmdRunCancel},
			{"signal", "deliver an event to a run (WaitEvent)", cmdRunSignal},
			{"export", "write a run's history (run, steps, requests, decisions) as JSON", cmdRunExport},
			{"replay", "re-execute this binary's code against a run's history, writing nothing", cmdRunReplay},
		}}.run},
		"workflow": {"list the workflow versions with their runs that have not ended", group{"workflow", []subcommand{
			{"list", "each workflow version, its waiting and running runs, and whether this binary has it", cmdWorkflowList},
		}}.run},
		"demo": {"migrate, seed demo policy, serve, and keep starting demo runs", cmdDemo},
		"policy": {"check, apply, show, list and simulate approval policies", group{"policy", []subcommand{
			{"check", "check a policy file without a database", cmdPolicyCheck},
			{"apply", "check a policy file and activate it", cmdPolicyApply},
			{"show", "print the active policy, or one version", cmdPolicyShow},
			{"history", "list the policy versions", cmdPolicyHistory},
			{"simulate", "replay recent requests under a candidate policy", cmdPolicySimulate},
		}}.run},
		"audit": {"verify the audit chain and print its head", group{"audit", []subcommand{
			{"verify", "verify the chain, and that it still holds a saved head", cmdAuditVerify},
			{"head", "print the chain head, or save it for verify --against", cmdAuditHead},
			{"export", "write events as CSV or JSON lines, filtered", cmdAuditExport},
		}}.run},
		"receipt": {"verify decision receipts and print the keys that sign them", group{"receipt", []subcommand{
			{"verify", "check a receipt's signature, offline with --keys or against a server's keys", cmdReceiptVerify},
			{"keys", "print the public receipt keys as JSON, to keep for verify --keys", cmdReceiptKeys},
		}}.run},
		"bench": {"measure throughput and latency against baselines in one run", cmdBench},
		"user": {"add, list, disable and enable console users", group{"user", []subcommand{
			{"add", "add a console user", cmdUserAdd},
			{"list", "list the console users", cmdUserList},
			{"role", "change a user's role; their sessions end", cmdUserRole},
			{"disable", "disable a user; their sessions end", cmdUserDisable},
			{"enable", "enable a disabled user", cmdUserEnable},
		}}.run},
		"token": {"create, list and revoke API tokens", group{"token", []subcommand{
			{"create", "create a token for a user; its secret is printed once", cmdTokenCreate},
			{"list", "list tokens, with their scopes, expiry and last use", cmdTokenList},
			{"revoke", "revoke a token at once", cmdTokenRevoke},
		}}.run},
	}
}

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string, opts Options) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, opts: opts}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "countersign: unknown command %q (run countersign --help)\n", args[0])
		return exitUsage
	}
	err := cmd.run(e, args[1:])
	var ee exitError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ee):
		fmt.Fprintf(stderr, "countersign %s: %v\n", args[0], err)
		return ee.code
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "countersign %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "countersign %s: %v\n", args[0], err)
		return exitFail
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "countersign: a human-in-the-loop approval console for AI workflows")
	fmt.Fprintln(w, "\nUsage: countersign <command> [flags]  (countersign <command> --help for each)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEnvironment: DATABASE_URL, COUNTERSIGN_ADDR, COUNTERSIGN_WORKERS, COUNTERSIGN_RESCUE_AFTER,")
	fmt.Fprintln(w, "COUNTERSIGN_MODEL_PROVIDER (offline|openai), COUNTERSIGN_MODEL, COUNTERSIGN_MODEL_BASE_URL,")
	fmt.Fprintln(w, "COUNTERSIGN_MODEL_API_KEY, COUNTERSIGN_MODEL_TIMEOUT, COUNTERSIGN_CALLBACK_ALLOW (CIDRs and host")
	fmt.Fprintln(w, "names callbacks may reach although private or loopback); notification mail: COUNTERSIGN_SMTP_HOST,")
	fmt.Fprintln(w, "COUNTERSIGN_SMTP_PORT, COUNTERSIGN_SMTP_USERNAME, COUNTERSIGN_SMTP_PASSWORD, COUNTERSIGN_SMTP_FROM,")
	fmt.Fprintln(w, "COUNTERSIGN_SMTP_TLS (starttls|tls|none), COUNTERSIGN_PUBLIC_URL (links); Slack: COUNTERSIGN_SLACK_BOT_TOKEN,")
	fmt.Fprintln(w, "COUNTERSIGN_SLACK_CHANNEL, COUNTERSIGN_SLACK_WEBHOOK_URL, COUNTERSIGN_SLACK_SIGNING_SECRET (buttons),")
	fmt.Fprintln(w, "COUNTERSIGN_SLACK_API_URL. See README.md.")
}

// flags returns a flag set whose errors and help go to the command's stderr,
// with the shared --database-url flag.
func (e *env) flags(name, usage string) (*flagSet, *string) {
	fs := e.clientFlags(name, usage)
	fs.dbURL = fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL or "+config.DefaultDatabaseURL+")")
	return fs, fs.dbURL
}

// clientFlags is flags for a command that does not open the database (ask,
// a client of the API): no --database-url.
func (e *env) clientFlags(name, usage string) *flagSet {
	fs := flag.NewFlagSet("countersign "+name, flag.ContinueOnError)
	// Errors are reported in one line by Main; --help prints the usage.
	fs.SetOutput(io.Discard)
	// The flag package calls Usage on every error; help is printed by parse
	// for --help only, so that a mistake gets one line.
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, help: func() {
		fmt.Fprintf(e.stderr, "Usage: countersign %s\n\n", usage)
		fs.SetOutput(e.stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}}
}

// flagSet is a command's flags and its --help text.
type flagSet struct {
	*flag.FlagSet
	dbURL *string // --database-url
	help  func()
}

// parse parses flags, allowing them before and after positional arguments
// (`policy apply FILE --by alice`), and turns a flag mistake into a usage error.
func parse(fs *flagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help()
				return err
			}
			return usageError{errors.New(err.Error() + " (see --help)")}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	// Parse the collected positionals into fs.Args() without flag parsing.
	return fs.Parse(append([]string{"--"}, positional...))
}

// config reads the environment, applies flag overrides and validates.
func (e *env) config(dbURL string) (config.Config, error) {
	cfg, err := config.FromEnv(e.getenv)
	if err != nil {
		return cfg, usageError{err}
	}
	if dbURL != "" {
		cfg.DatabaseURL = dbURL
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// open reads the configuration and opens the database, for commands that
// need nothing else.
func (e *env) open(dbURL string) (*pgxpool.Pool, error) {
	cfg, err := e.config(dbURL)
	if err != nil {
		return nil, err
	}
	return e.schemaPool(cfg)
}

// pool opens the database; it does not migrate. A database that cannot be
// reached is a configuration mistake more often than an outage, so it is a
// usage error that says what to check rather than pgx's dial chain.
func (e *env) pool(cfg config.Config) (*pgxpool.Pool, error) {
	pool, err := app.NewPool(e.ctx, cfg)
	if err != nil && e.ctx.Err() == nil {
		return nil, connectError(cfg.DatabaseURL, err)
	}
	return pool, err
}

// connectError says, in one line, where the database was looked for and what
// to check; the driver's own reason is kept at the end for the rare case it
// says more (a wrong password, a missing database).
func connectError(dbURL string, err error) error {
	where := "the database"
	if pc, perr := pgx.ParseConfig(dbURL); perr == nil {
		where = fmt.Sprintf("PostgreSQL at %s:%d (database %q)", pc.Host, pc.Port, pc.Database)
	}
	reason := err.Error()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		reason = pgErr.Message
	} else if i := strings.LastIndex(reason, ": "); i >= 0 {
		reason = reason[i+2:]
	}
	return usageError{unreachable{
		msg: fmt.Sprintf("cannot connect to %s: check DATABASE_URL (or --database-url) and that PostgreSQL is running (%s)", where, reason),
		err: err,
	}}
}

// unreachable is connectError's message over the driver's error, which it
// shortens for the one line but keeps for errors.Is and errors.As.
type unreachable struct {
	msg string
	err error
}

func (u unreachable) Error() string { return u.msg }
func (u unreachable) Unwrap() error { return u.err }

// schemaPool opens the database for a command that needs Countersign's
// tables. Checking the migrations first turns "relation does not exist" from
// whichever query came first into the one thing to do.
func (e *env) schemaPool(cfg config.Config) (*pgxpool.Pool, error) {
	pool, err := e.pool(cfg)
	if err != nil {
		return nil, err
	}
	n, err := migrations.Pending(e.ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("read the migration status: %w", err)
	}
	if n > 0 {
		pool.Close()
		return nil, usagef("the database schema is not current (%d migrations pending); run countersign migrate", n)
	}
	return pool, nil
}

// appOptions gives a process the binary's workflows and model, and the
// command's logger.
func (e *env) appOptions(opts app.Options) app.Options {
	opts.Logger = e.logger()
	opts.Workflows = e.opts.Workflows
	if e.opts.Model != nil {
		opts.Model = e.opts.Model
	}
	return opts
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func cmdMigrate(e *env, args []string) error {
	fs, dbURL := e.flags("migrate", "migrate [--database-url URL]")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := e.config(*dbURL)
	if err != nil {
		return err
	}
	if err := migrate(e, cfg); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "migrations applied")
	return nil
}

func migrate(e *env, cfg config.Config) error {
	if err := migrations.EnsureDatabase(e.ctx, cfg.DatabaseURL); err != nil {
		// Only a failed connection gets the what-to-check line; a refused
		// CREATE DATABASE says what it is.
		if errors.As(err, new(*pgconn.ConnectError)) && e.ctx.Err() == nil {
			return connectError(cfg.DatabaseURL, err)
		}
		return err
	}
	pool, err := e.pool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	return migrations.Up(e.ctx, pool)
}

func cmdServe(e *env, args []string) error {
	fs, dbURL := e.flags("serve", "serve [--web-only | --worker-only] [--addr :8080] [--workers N]")
	webOnly := fs.Bool("web-only", false, "serve the console and API only; run no jobs")
	workerOnly := fs.Bool("worker-only", false, "run jobs only; serve no HTTP")
	addr := fs.String("addr", "", "listen address (default $COUNTERSIGN_ADDR or :8080)")
	workers := fs.Int("workers", 0, "River workers in this process (default $COUNTERSIGN_WORKERS or 20)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *webOnly && *workerOnly {
		return usagef("--web-only and --worker-only exclude each other")
	}
	cfg, err := e.serveConfig(*dbURL, *addr, *workers)
	if err != nil {
		return err
	}
	return serve(e, cfg, app.Options{Web: !*workerOnly, Worker: !*webOnly}, nil)
}

// serveConfig reads the configuration with the overrides of serve and demo
// (zero values override nothing).
func (e *env) serveConfig(dbURL, addr string, workers int) (config.Config, error) {
	cfg, err := e.config(dbURL)
	if err != nil {
		return cfg, err
	}
	if addr != "" {
		cfg.Addr = addr
	}
	if workers != 0 {
		cfg.Workers = workers
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// serve runs a process until the context ends; background, when set, runs
// beside it (the demo's run generator).
func serve(e *env, cfg config.Config, opts app.Options, background func(ctx context.Context, a *app.App)) error {
	stopTracing, err := e.tracing()
	if err != nil {
		return err
	}
	defer stopTracing()
	pool, err := e.schemaPool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	a, err := app.New(cfg, pool, e.appOptions(opts))
	if err != nil {
		return err
	}
	if background != nil {
		go background(e.ctx, a)
	}
	return a.Run(e.ctx)
}

// tracing starts exporting spans when OTEL_EXPORTER_OTLP_ENDPOINT is set
// (internal/tracing), before the pool is opened so that it is traced too.
// The returned function flushes what is buffered, for a few seconds at most.
func (e *env) tracing() (stop func(), err error) {
	shutdown, err := tracing.Setup(e.ctx, e.getenv)
	if err != nil {
		return nil, usageError{err}
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(e.ctx), 5*time.Second)
		defer cancel()
		if err := shutdown(ctx); err != nil {
			fmt.Fprintf(e.stderr, "countersign: flushing traces: %v\n", err)
		}
	}, nil
}

// parseNoArgs parses the flags of a command that takes no positional argument.
func parseNoArgs(fs *flagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// parseOne parses the flags of a command that takes one positional argument,
// described by what in the error, and returns that argument.
func parseOne(fs *flagSet, args []string, what string) (string, error) {
	if err := parse(fs, args); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		return "", usagef("expected one argument, %s", what)
	}
	return strings.TrimSpace(fs.Arg(0)), nil
}

// withDB opens the database (dbURL, else the environment's), runs fn on it,
// and closes it.
func (e *env) withDB(dbURL string, fn func(pool *pgxpool.Pool) error) error {
	pool, err := e.open(dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(pool)
}

// parseQuery parses the flags of a command that prints what one query reads,
// opens the database and returns what query reads.
func parseQuery[T any](e *env, fs *flagSet, args []string, query func(context.Context, store.DBTX) (T, error)) (T, error) {
	if err := parse(fs, args); err != nil {
		var zero T
		return zero, err
	}
	return withDBV(e, *fs.dbURL, func(pool *pgxpool.Pool) (T, error) {
		return query(e.ctx, pool)
	})
}

// withDBV is withDB for a function that returns a value, as River's WithTxV
// is for WithTx.
func withDBV[T any](e *env, dbURL string, fn func(pool *pgxpool.Pool) (T, error)) (T, error) {
	var v T
	err := e.withDB(dbURL, func(pool *pgxpool.Pool) (err error) {
		v, err = fn(pool)
		return err
	})
	return v, err
}
