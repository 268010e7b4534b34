// Package app wires Countersign's parts into a process: the database pool,
// River, the engine, the policy cache, the notification listener and the web
// server. internal/cli and the end-to-end tests start processes through it.
package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel/trace"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/email"
	"github.com/countersign/countersign/internal/notice/slack"
	"github.com/countersign/countersign/internal/notice/webhook"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/safehttp"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/tracing"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/jobs"
	"github.com/countersign/countersign/web"
)

// Options say what a process runs.
type Options struct {
	Web    bool
	Worker bool
	Logger *slog.Logger
	// Listener, when set, is where the web side serves (tests pass :0).
	Listener net.Listener
	// Workflows are the binary's own: a program embedding Countersign passes
	// its registry (countersign.Main). The process copies them into a
	// registry of its own, beside the built-ins, and leaves this one as it is.
	Workflows *workflow.Registry
	// Demo registers the demo workflows (internal/demo): the demo command,
	// the countersign binary's run commands, and tests ask for them; a
	// production process runs only its Workflows and what Register adds.
	Demo bool
	// Register adds workflows (tests and benchmarks use it).
	Register func(r *workflow.Registry, model *ai.Offline)
	// Model overrides the configured provider (tests use it).
	Model ai.Provider
	// Now overrides the clock of deadlines and batches (tests move it).
	Now func() time.Time
	// Recovery overrides how runs of lost workers are found and handed on
	// (zero fields keep the defaults: 15 s lease, sweep every 5 s).
	Recovery Recovery
	// KeepAlive overrides how often a live-update stream pings and
	// re-checks its session (zero: web's default, 25 s; tests shorten it).
	KeepAlive time.Duration
	// CallbackBackoff replaces the wait between a callback's attempts
	// (callback.Backoff); tests shorten it.
	CallbackBackoff func(attempt int) time.Duration
	// Callbacks and Receipts replace the approvals API's callback outbox and
	// receipt signer (tests record what is sent); nil keeps the real ones.
	Callbacks ask.Callbacks
	Receipts  ask.Receipts
	// NoticeWindow overrides the notification coalescing window (default one minute).
	NoticeWindow time.Duration
	// Channels adds notification channels to those configured (tests use it).
	Channels []notice.Channel
	// TracerProvider receives the process's spans (tests pass an in-memory
	// one); nil means tracing.Global(), the provider the environment set up,
	// itself nil while traces are off: then nothing is instrumented.
	TracerProvider trace.TracerProvider
}

// Recovery tunes run leases and the sweeper (workflow.Config has the details).
type Recovery struct {
	Lease         time.Duration
	RenewEvery    time.Duration
	SweepEvery    time.Duration
	MaxRecoveries int
	// JobTimeout overrides River's limit on one execution of a run.
	JobTimeout time.Duration
}

// App is one Countersign process.
type App struct {
	Config   config.Config
	Pool     *pgxpool.Pool
	River    *river.Client[pgx.Tx]
	Engine   *workflow.Engine
	Policies *policystore.Cache
	Notify   *notify.Listener
	Receipts *receipt.Signer
	// Callbacks is the outbox of signed callbacks (approvals, webhooks).
	Callbacks *callback.Outbox
	Notices   *notice.Dispatcher
	// Ask files and reads approvals (the approvals API, MCP, `countersign ask`).
	Ask *ask.Service
	// Slack is the Slack channel and client (nil when not configured);
	// Webhooks the webhook subscriptions.
	Slack    *slack.Client
	Webhooks *webhook.Service
	Web      *web.Server
	opts     Options
	logger   *slog.Logger
}

// NewPool opens a pool sized for River's workers, its listener and the web side.
func NewPool(ctx context.Context, cfg config.Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	// Every string the process sends or reads is UTF-8, whatever the
	// server, the database or the role sets as its client encoding.
	pc.ConnConfig.RuntimeParams["client_encoding"] = "UTF8"
	// Each callback being sent holds a connection (its row lock) too.
	pc.MaxConns = int32(cfg.Workers + jobs.CallbackWorkers + 12)
	if tp := tracing.Global(); tp != nil {
		pc.ConnConfig.Tracer = tracing.Pgx(tp)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// New builds a process on an open pool. It starts nothing; call Run.
func New(cfg config.Config, pool *pgxpool.Pool, opts Options) (*App, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	offline := ai.NewOffline()
	model, err := newModel(cfg, opts, offline)
	if err != nil {
		return nil, err
	}
	registry := NewRegistry(opts, offline)
	listener := notify.NewListener(pool, logger)
	policies := policystore.NewCache(pool, 30*time.Second)
	rec := opts.Recovery
	// River's own warnings and errors (a failing job, a lost leader) belong in the
	// app's log; its info lines are routine.
	riverLogger := slog.New(minLevel{logger.Handler().WithAttrs([]slog.Attr{slog.String("component", "river")}), slog.LevelWarn})
	tp := opts.TracerProvider
	if tp == nil {
		tp = tracing.Global()
	}
	var riverMiddleware []rivertype.Middleware
	if tp != nil {
		riverMiddleware = append(riverMiddleware, tracing.NewRiver(tp))
	}
	scheduler, err := jobs.NewScheduler(pool, riverLogger, riverMiddleware...)
	if err != nil {
		return nil, err
	}
	engine := workflow.New(workflow.Config{Pool: pool, Registry: registry, Scheduler: scheduler, Policies: policies, Model: model, Logger: logger, Now: opts.Now,
		MaxStepOutput: cfg.MaxStepOutput, Lease: rec.Lease, RenewEvery: rec.RenewEvery, MaxRecoveries: rec.MaxRecoveries,
		Notices: notice.NewOutbox(scheduler), Tracer: tp, Listener: listener})
	// Validate checked the allow-list; a Config built in code may hold none.
	allow, err := safehttp.ParseAllow(cfg.CallbackAllow)
	if err != nil {
		return nil, fmt.Errorf("COUNTERSIGN_CALLBACK_ALLOW: %w", err)
	}
	callbacks := callback.NewOutbox(pool, scheduler, allow, engine.Now)
	deliverer := callback.NewDeliverer(pool, allow, engine.Now)
	if opts.CallbackBackoff != nil {
		deliverer.BackoffFunc = opts.CallbackBackoff
	}
	webhooks := webhook.New(pool, callbacks, publicURL(cfg, opts.Listener))
	var slackClient *slack.Client
	if cfg.Slack.Enabled() {
		// The Slack URLs come from the configuration; they still go through
		// the SSRF-checked client, so that a mistyped one cannot reach inside.
		slackClient = slack.New(cfg.Slack, allow.Client(), pool, publicURL(cfg, opts.Listener), logger)
		slackClient.ScheduleUpdateFunc = scheduler.ScheduleChatUpdate
	}
	notices := newDispatcher(cfg, opts, pool, scheduler, engine, logger, slackClient, webhooks)
	receipts, err := NewSigner(pool, cfg)
	if err != nil {
		return nil, err
	}
	approvals := ask.New(ask.Config{Pool: pool, Notify: listener, Callbacks: askCallbacks(opts, callbacks),
		Receipts: askReceipts(opts, receipts), PublicURL: cfg.PublicURL})
	// The approvals API's workflow runs in every process, like the API.
	approvals.Register(registry)
	approvals.SetEngine(engine)
	rc := riverConfig(cfg, opts, engine, deliverer, notices, slackClient, riverLogger)
	rc.Middleware = riverMiddleware
	client, err := river.NewClient(riverpgxv5.New(pool), rc)
	if err != nil {
		return nil, fmt.Errorf("river client: %w", err)
	}

	a := &App{Config: cfg, Pool: pool, River: client, Engine: engine, Policies: policies, Callbacks: callbacks,
		Notify: listener, Receipts: receipts, Ask: approvals, Notices: notices, Slack: slackClient, Webhooks: webhooks, opts: opts, logger: logger}
	if opts.Web {
		keys, err := sessionKeys(context.Background(), pool, cfg)
		if err != nil {
			return nil, err
		}
		// A web process signs receipts: one that cannot should not start.
		if _, err := receipts.KeyID(context.Background()); err != nil {
			return nil, fmt.Errorf("receipt key: %w", err)
		}
		a.Web = web.New(web.Deps{Pool: pool, Engine: engine, Policies: policies, Notify: a.Notify, Receipts: receipts, Ask: approvals,
			Logger: logger, SessionKeys: keys, Secure: cfg.Secure, Now: engine.Now, KeepAlive: opts.KeepAlive,
			Origins: publicOrigins(cfg, opts.Listener), TrustedProxies: cfg.TrustedProxies, Callbacks: callbacks, Notices: notices,
			Slack: slackClient, Webhooks: webhooks, Trace: traceHTTP(tp), MetricQueues: []string{river.QueueDefault, jobs.QueueCallbacks}})
	}
	return a, nil
}

// NewRegistry returns the workflows a process with opts runs: the binary's
// (opts.Workflows), the demo's when asked, what opts.Register adds, and the
// built-ins. It is the one place where a process's registry is assembled, so
// that the command line's help lists exactly what serve runs. Generators the
// demo needs are added to offline. A name registered twice panics.
func NewRegistry(opts Options, offline *ai.Offline) *workflow.Registry {
	registry := workflow.NewRegistry()
	registry.Include(opts.Workflows)
	if opts.Demo {
		demo.Register(registry, offline)
	}
	if opts.Register != nil {
		opts.Register(registry, offline)
	}
	// Built-in workflows, which every process runs whatever the binary
	// registered, are added here.
	return registry
}

// traceHTTP is the web side's tracing middleware, nil while traces are off.
func traceHTTP(tp trace.TracerProvider) echo.MiddlewareFunc {
	if tp == nil {
		return nil
	}
	return tracing.Echo(tp)
}

// newModel returns opts.Model when a test sets one, else the configured
// provider; the offline model is the default so that a process with no
// model configured still runs.
func newModel(cfg config.Config, opts Options, offline *ai.Offline) (ai.Provider, error) {
	if opts.Model != nil {
		return opts.Model, nil
	}
	if cfg.ModelProvider != "openai" {
		return offline, nil
	}
	p, err := ai.NewOpenAI(ai.OpenAIConfig{BaseURL: cfg.ModelBaseURL, APIKey: cfg.ModelAPIKey,
		Model: cfg.ModelName, Timeout: cfg.ModelTimeout, MaxRetries: 2})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// newDispatcher builds the notification dispatcher with the configured
// channels: mail when COUNTERSIGN_SMTP_HOST is set, and any a test adds.
func newDispatcher(cfg config.Config, opts Options, pool *pgxpool.Pool, scheduler *jobs.Scheduler, engine *workflow.Engine, logger *slog.Logger,
	slackClient *slack.Client, webhooks *webhook.Service) *notice.Dispatcher {
	var channels []notice.Channel
	if cfg.SMTP.Host != "" {
		channels = append(channels, email.New(cfg.SMTP))
	}
	if slackClient != nil {
		channels = append(channels, slackClient)
	}
	channels = append(channels, opts.Channels...)
	return notice.NewDispatcher(notice.Config{Pool: pool, Scheduler: scheduler, Channels: channels, Hooks: []notice.Hook{webhooks}, PublicURL: publicURL(cfg, opts.Listener),
		Window: opts.NoticeWindow, Now: engine.Now, Logger: logger})
}

// publicURL is where links in notifications point: COUNTERSIGN_PUBLIC_URL,
// or else the first loopback origin of the web listener.
func publicURL(cfg config.Config, ln net.Listener) string {
	return publicOrigins(cfg, ln)[0]
}

// riverConfig registers the job kinds on engine. Only a worker process gets a
// queue: a web process inserts jobs but never fetches them.
func riverConfig(cfg config.Config, opts Options, engine *workflow.Engine, deliverer *callback.Deliverer, notices *notice.Dispatcher,
	slackClient *slack.Client, logger *slog.Logger) *river.Config {
	// A job is presumed crashed after RescueAfter; it must be allowed to run
	// a little less than that.
	jobTimeout := jobs.RunTimeout
	if cfg.RescueAfter <= jobTimeout {
		jobTimeout = cfg.RescueAfter / 2
	}
	if opts.Recovery.JobTimeout > 0 {
		jobTimeout = min(opts.Recovery.JobTimeout, jobTimeout)
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &jobs.RunWorker{Engine: engine, JobTimeout: jobTimeout})
	river.AddWorker(workers, &jobs.BatchCloseWorker{Engine: engine})
	river.AddWorker(workers, &jobs.DeadlineWorker{Engine: engine})
	river.AddWorker(workers, &jobs.CallbackWorker{Deliverer: deliverer})
	river.AddWorker(workers, &jobs.NoticeFanoutWorker{Dispatcher: notices})
	river.AddWorker(workers, &jobs.NoticeFlushWorker{Dispatcher: notices})
	river.AddWorker(workers, &jobs.NoticeSendWorker{Dispatcher: notices})
	river.AddWorker(workers, &jobs.NoticeReminderWorker{Engine: engine})
	river.AddWorker(workers, &jobs.ChatUpdateWorker{Slack: slackClient})
	rc := &river.Config{
		Workers:              workers,
		JobTimeout:           jobTimeout,
		RescueStuckJobsAfter: max(cfg.RescueAfter, time.Second),
		MaxAttempts:          jobs.RunMaxAttempts,
		// A resumed run should start within milliseconds of the decision's
		// commit: fetch as soon as River's insert notification arrives.
		FetchCooldown:     jobs.FetchCooldown,
		FetchPollInterval: 500 * time.Millisecond,
		Logger:            logger,
	}
	if opts.Worker {
		rc.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: cfg.Workers},
			jobs.QueueCallbacks: {MaxWorkers: jobs.CallbackWorkers}}
	}
	return rc
}

// sessionKeys returns the cookie keys, newest first: from the configuration
// or its file, or else generated on first use and kept in the settings table
// so that every process shares them. The countersign_app role cannot read
// that table (migration 00007): a process running as it must be given keys.
func sessionKeys(ctx context.Context, pool *pgxpool.Pool, cfg config.Config) ([][]byte, error) {
	switch {
	case cfg.SessionKey != "":
		keys, err := config.ParseSessionKeys(cfg.SessionKey)
		if err != nil {
			return nil, fmt.Errorf("COUNTERSIGN_SESSION_KEY: %w", err)
		}
		return keys, nil
	case cfg.SessionKeyFile != "":
		raw, err := os.ReadFile(cfg.SessionKeyFile)
		if err != nil {
			return nil, fmt.Errorf("COUNTERSIGN_SESSION_KEY_FILE: %w", err)
		}
		keys, err := config.ParseSessionKeys(string(raw))
		if err != nil {
			return nil, fmt.Errorf("COUNTERSIGN_SESSION_KEY_FILE %s: %w", cfg.SessionKeyFile, err)
		}
		return keys, nil
	}
	raw, err := store.SettingGetOrCreate(ctx, pool, "session_keys", func() []byte {
		b := make([]byte, 64)
		_, _ = rand.Read(b)
		return b
	})
	if errors.Is(err, store.ErrPermission) {
		return nil, errors.New("this database user may not read the stored session keys: set COUNTERSIGN_SESSION_KEY or COUNTERSIGN_SESSION_KEY_FILE (openssl rand -hex 64)")
	} else if err != nil {
		return nil, fmt.Errorf("session keys: %w", err)
	}
	if len(raw) != 64 {
		return nil, errors.New("session keys must be 64 bytes")
	}
	return [][]byte{raw}, nil
}

// NewSigner returns the receipt signer of the configuration: with the key
// file COUNTERSIGN_RECEIPT_KEY names, read now so that a bad file stops the
// process at start, or else with the key stored in the database.
func NewSigner(pool *pgxpool.Pool, cfg config.Config) (*receipt.Signer, error) {
	if cfg.ReceiptKey == "" {
		return receipt.NewSigner(pool, nil), nil
	}
	key, err := receipt.LoadKeyFile(cfg.ReceiptKey)
	if err != nil {
		return nil, fmt.Errorf("COUNTERSIGN_RECEIPT_KEY: %w", err)
	}
	return receipt.NewSigner(pool, key), nil
}

// publicOrigins are the origins console forms may come from: the configured
// public URL, or the loopback names of the port the web side listens on.
func publicOrigins(cfg config.Config, ln net.Listener) []string {
	if cfg.PublicURL != "" {
		return []string{strings.ToLower(strings.TrimSuffix(cfg.PublicURL, "/"))}
	}
	_, port, _ := net.SplitHostPort(cfg.Addr)
	if ln != nil {
		_, port, _ = net.SplitHostPort(ln.Addr().String())
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	var out []string
	for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
		out = append(out, scheme+"://"+h+":"+port)
	}
	return out
}

// Web server timeouts. A slow or stalled client cannot hold a connection
// longer than these; the event stream lifts its own write deadline.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 60 * time.Second
	IdleTimeout       = 2 * time.Minute
)

func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout,
		WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout}
}

// minLevel passes on a handler's records at min and above.
type minLevel struct {
	slog.Handler
	min slog.Level
}

// Enabled reports whether a record at l is passed on.
func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

// WithAttrs keeps the level floor on the derived handler.
func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

// WithGroup keeps the level floor on the derived handler.
func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// ChainEvery is how often worker processes link new audit events into the
// hash chain: the longest an event stays unchained.
const ChainEvery = 200 * time.Millisecond

// Run serves until ctx ends, then stops gracefully: the web side drains its
// requests and River lets running jobs finish for a while before cancelling them.
func (a *App) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer func() { stopBG(); wg.Wait() }()
	policyMsgs, unsubscribe := a.Notify.Subscribe(16)
	defer unsubscribe()
	wg.Add(2)
	go func() { defer wg.Done(); a.Policies.Follow(bg, policyMsgs) }()
	go func() { defer wg.Done(); a.Notify.Run(bg) }()
	if a.opts.Worker {
		// River's rescuer stays the backstop for jobs of other kinds; runs of
		// a lost worker are handed on by the sweeper once their lease lapses.
		sweepEvery := a.opts.Recovery.SweepEvery
		if sweepEvery <= 0 {
			sweepEvery = workflow.DefaultSweepEvery
		}
		roller := &metrics.Roller{Pool: a.Pool, Logger: a.logger}
		wg.Add(3)
		go func() { defer wg.Done(); roller.RunRoller(bg, metrics.DefaultInterval) }()
		go func() { defer wg.Done(); audit.RunChainer(bg, a.Pool, ChainEvery, a.logger) }()
		go func() { defer wg.Done(); a.Engine.RunRecovery(bg, sweepEvery) }()
	}

	errc := make(chan error, 3)
	if a.opts.Worker {
		if err := a.River.Start(bg); err != nil {
			return fmt.Errorf("start river: %w", err)
		}
		a.logger.Info("worker started", "workers", a.Config.Workers)
	}
	var srv *http.Server
	if a.opts.Web {
		ln := a.opts.Listener
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", a.Config.Addr); err != nil {
				return fmt.Errorf("listen on %s: %w", a.Config.Addr, err)
			}
		}
		srv = newHTTPServer(a.Web.Handler())
		a.logger.Info("web started", "addr", "http://"+ln.Addr().String())
		go func() {
			var err error
			if a.Config.TLSCert != "" {
				err = srv.ServeTLS(ln, a.Config.TLSCert, a.Config.TLSKey)
			} else {
				err = srv.Serve(ln)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}

	var metricsSrv *http.Server
	if a.Config.MetricsAddr != "" {
		ln, err := net.Listen("tcp", a.Config.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listen on %s (COUNTERSIGN_METRICS_ADDR): %w", a.Config.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metrics.Handler(metrics.NewCollector(a.Pool, a.logger, river.QueueDefault, jobs.QueueCallbacks)))
		metricsSrv = newHTTPServer(mux)
		a.logger.Info("metrics started", "addr", "http://"+ln.Addr().String()+"/metrics")
		go func() {
			if err := metricsSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.logger.Info("stopping")
	for _, srv := range []*http.Server{srv, metricsSrv} {
		if srv != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		}
	}
	// Approvals executing inline finish (each is bounded by its timeout)
	// before River and the pool stop under them.
	a.Ask.Wait()
	defer a.Engine.Flush() // the last signals go before the caller closes the pool
	if a.opts.Worker {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := a.River.Stop(sctx); err != nil {
			a.logger.Warn("jobs still running after the soft stop; cancelling them", "err", err)
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = a.River.StopAndCancel(cctx)
			ccancel()
		}
		cancel()
	}
	return runErr
}

// askCallbacks is the outbox the approvals API enqueues callbacks in: the
// process's own, unless a test replaces it.
func askCallbacks(opts Options, outbox *callback.Outbox) ask.Callbacks {
	if opts.Callbacks != nil {
		return opts.Callbacks
	}
	return outbox
}

// askReceipts is the signer of the approvals API's receipts: the process's
// own, unless a test replaces it.
func askReceipts(opts Options, signer *receipt.Signer) ask.Receipts {
	if opts.Receipts != nil {
		return opts.Receipts
	}
	return signer
}
