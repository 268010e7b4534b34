// Package testapp starts a real Countersign process (River workers, engine,
// listener) on a fresh test database, for tests of everything above the store.
package testapp

import (
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// Options adjust the process.
type Options struct {
	Register    func(r *workflow.Registry, model *ai.Offline)
	Model       ai.Provider
	Web         bool
	NoWorker    bool
	RescueAfter time.Duration
	Now         func() time.Time
	Recovery    app.Recovery // run leases and the sweeper; zero keeps the defaults
	// KeepAlive shortens the web side's live-update keep-alive.
	KeepAlive time.Duration
	// CallbackAllow is COUNTERSIGN_CALLBACK_ALLOW (tests' receivers listen
	// on loopback, which is refused without it).
	CallbackAllow string
	// CallbackBackoff shortens the wait between a callback's attempts.
	CallbackBackoff func(attempt int) time.Duration
	// Callbacks and Receipts serve the approvals API (nil: none).
	Callbacks ask.Callbacks
	Receipts  ask.Receipts
	// PublicURL is the console's origin (COUNTERSIGN_PUBLIC_URL).
	PublicURL string
	// SMTP sends notification mail (to a test server); NoticeWindow shortens
	// the coalescing window; Channels adds notification channels.
	SMTP config.SMTP
	// Slack configures the Slack channel (its API URL at a test server).
	Slack        config.Slack
	NoticeWindow time.Duration
	Channels     []notice.Channel
	// TracerProvider receives the process's spans (nil: tracing.Global()).
	TracerProvider trace.TracerProvider
	// MetricsAddr is COUNTERSIGN_METRICS_ADDR (GET /metrics without a token).
	MetricsAddr string
}

// Bundle is a running process and its database.
type Bundle struct {
	Pool   *pgxpool.Pool
	URL    string // the database URL
	App    *app.App
	Engine *workflow.Engine
	Addr   string // base URL of the web side, when started
}

// Start runs a process until the test ends.
func Start(t testing.TB, opts Options) *Bundle {
	t.Helper()
	pool, url := testdb.Pool(t)
	return StartOn(t, pool, url, opts)
}

// StartOn runs a process on an existing test database.
func StartOn(t testing.TB, pool *pgxpool.Pool, url string, opts Options) *Bundle {
	t.Helper()
	cfg := config.Config{DatabaseURL: url, Addr: "127.0.0.1:0", Workers: 10, RescueAfter: 15 * time.Minute, ModelProvider: "offline",
		SMTP: opts.SMTP, Slack: opts.Slack}
	cfg.PublicURL = opts.PublicURL
	if opts.RescueAfter > 0 {
		cfg.RescueAfter = opts.RescueAfter
	}
	cfg.CallbackAllow = opts.CallbackAllow
	cfg.MetricsAddr = opts.MetricsAddr
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	// A test process is a demo process: tests drive the demo workflows.
	ao := app.Options{Worker: !opts.NoWorker, Web: opts.Web, Demo: true, Register: opts.Register, Model: opts.Model,
		Logger: logger, Now: opts.Now, Recovery: opts.Recovery, KeepAlive: opts.KeepAlive, CallbackBackoff: opts.CallbackBackoff,
		Callbacks: opts.Callbacks, Receipts: opts.Receipts,
		NoticeWindow: opts.NoticeWindow, Channels: opts.Channels, TracerProvider: opts.TracerProvider}
	b := &Bundle{Pool: pool, URL: url}
	if opts.Web {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ao.Listener = ln
		b.Addr = "http://" + ln.Addr().String()
	}
	a, err := app.New(cfg, pool, ao)
	require.NoError(t, err)
	b.App, b.Engine = a, a.Engine
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Start from a connected process: live updates and policy reloads ride
	// on the listener.
	select {
	case <-a.Notify.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the notification listener did not connect")
	}
	return b
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// WaitRun polls until the run reaches one of the statuses and returns it.
func (b *Bundle) WaitRun(t testing.TB, id string, statuses ...vocab.RunStatus) *store.Run {
	t.Helper()
	return b.WaitRunWithin(t, id, 30*time.Second, statuses...)
}

// WaitRunWithin is WaitRun with a chosen patience.
func (b *Bundle) WaitRunWithin(t testing.TB, id string, within time.Duration, statuses ...vocab.RunStatus) *store.Run {
	t.Helper()
	deadline := time.Now().Add(within)
	var run *store.Run
	for time.Now().Before(deadline) {
		var err error
		run, err = store.RunGet(context.Background(), b.Pool, id)
		require.NoError(t, err)
		if slices.Contains(statuses, run.Status) {
			return run
		}
		time.Sleep(15 * time.Millisecond)
	}
	t.Fatalf("run %s is %s (step %q, error %v), not %v after %s", id, run.Status, run.CurrentStep, deref(run.ErrorMessage), statuses, within)
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// PendingRequest returns the run's pending approval request.
func (b *Bundle) PendingRequest(t testing.TB, runID string) *store.Request {
	t.Helper()
	reqs, err := store.RequestListByRun(context.Background(), b.Pool, runID)
	require.NoError(t, err)
	for _, r := range reqs {
		if r.Status == vocab.RequestPending {
			return r
		}
	}
	t.Fatalf("run %s has no pending request", runID)
	return nil
}

// LiveJobs counts River jobs for a run that are not finished.
func (b *Bundle) LiveJobs(t testing.TB, runID string) int {
	t.Helper()
	var n int
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job
		WHERE args->>'run_id' = $1 AND state NOT IN ('completed', 'cancelled', 'discarded')`, runID).Scan(&n))
	return n
}
