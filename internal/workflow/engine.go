// Package workflow is the durable step engine: workflows are ordinary Go
// functions whose steps are recorded in PostgreSQL, so that a retry or a
// resumed run replays recorded results instead of repeating work, and whose
// human gates suspend the run without holding a worker or a job.
package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/approval"
	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// PolicySource returns the policy in force (approval.PolicySource: the
// engine and the approval service read the same one).
type PolicySource = approval.PolicySource

// StaticPolicy is a PolicySource that always returns the same policy.
type StaticPolicy struct{ Policy *policy.Policy }

// Active implements PolicySource.
func (s StaticPolicy) Active(context.Context) (*policy.Policy, error) { return s.Policy, nil }

// Config wires an Engine. Everything is given here: the engine is complete
// once New returns.
type Config struct {
	Pool *pgxpool.Pool
	// Scheduler enqueues runs and schedules deadlines and batch closes.
	Scheduler Scheduler
	Registry  *Registry
	Policies  PolicySource
	Model     ai.Provider
	Logger    *slog.Logger
	Now       func() time.Time
	// MaxStepOutput is the largest result, in bytes of JSON, that a step,
	// model call or effect may record and the largest action a run may
	// propose (COUNTERSIGN_MAX_STEP_OUTPUT); 0 means DefaultMaxStepOutput. A
	// workflow's Options.MaxStepOutput overrides it.
	MaxStepOutput int
	// Lease is how long a claimed run stays with its execution without a
	// renewal (default 15 s); RenewEvery is how often a running execution
	// renews it (default a third of Lease). A worker that dies leaves its
	// runs to the sweeper (Recover) once the lease lapses.
	Lease      time.Duration
	RenewEvery time.Duration
	// MaxRecoveries is how often a run is handed on after losing its
	// worker before it fails as worker_lost (default 5): a run that kills
	// every worker that executes it must end.
	MaxRecoveries int
	// Notices receives the notifications runs and requests cause (nil: none).
	Notices *notice.Outbox
	// Tracer makes the spans of runs (trace.go); nil when traces are off.
	Tracer trace.TracerProvider
	// Listener is the process's notification listener (nil: none). The
	// signals the engine sends after a commit, and its decisions, reach
	// its subscribers (long polls, open inboxes) at once, without waiting
	// for the database to deliver the notification.
	Listener *notify.Listener
}

// DefaultMaxStepOutput is the output limit when none is configured: far above
// any real proposal, far below what would stall a review page.
const DefaultMaxStepOutput = 256 << 10

// Recovery defaults.
const (
	DefaultLease         = 15 * time.Second
	DefaultSweepEvery    = 5 * time.Second
	DefaultMaxRecoveries = 5
)

// Engine starts, executes, decides and cancels workflow runs.
type Engine struct {
	pool      *pgxpool.Pool
	registry  *Registry
	policies  PolicySource
	model     ai.Provider
	scheduler Scheduler
	approvals *approval.Service
	logger    *slog.Logger
	now       func() time.Time
	maxOutput int

	lease         time.Duration
	renewEvery    time.Duration
	maxRecoveries int
	notices       *notice.Outbox
	// signals sends the signals given after a commit, several at a time.
	signals *notify.Coalescer

	tracer  trace.Tracer // trace.go
	tracing bool
}

// New returns an Engine. Pool, Registry and Scheduler are required.
func New(cfg Config) *Engine {
	e := &Engine{pool: cfg.Pool, registry: cfg.Registry, scheduler: cfg.Scheduler, policies: cfg.Policies, model: cfg.Model,
		logger: cfg.Logger, now: cfg.Now, maxOutput: cfg.MaxStepOutput, notices: cfg.Notices}
	if e.maxOutput <= 0 {
		e.maxOutput = DefaultMaxStepOutput
	}
	if e.policies == nil {
		e.policies = StaticPolicy{Policy: policy.Default()}
	}
	if e.model == nil {
		e.model = ai.NewOffline()
	}
	e.initTracing(cfg.Tracer) // trace.go
	if e.logger == nil {
		e.logger = slog.Default()
	}
	if e.pool != nil {
		e.signals = notify.NewCoalescer(e.pool, e.logger)
		e.signals.SetLocal(cfg.Listener)
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.lease, e.renewEvery, e.maxRecoveries = cfg.Lease, cfg.RenewEvery, cfg.MaxRecoveries
	if e.lease <= 0 {
		e.lease = DefaultLease
	}
	if e.renewEvery <= 0 {
		e.renewEvery = e.lease / 3
	}
	if e.maxRecoveries <= 0 {
		e.maxRecoveries = DefaultMaxRecoveries
	}
	e.approvals = approval.New(approval.Config{Pool: e.pool, Scheduler: e.scheduler, Runs: runMoves{engine: e}, Policies: e.policies,
		Now: e.now, OutputLimitFunc: e.outputLimit, Notices: cfg.Notices})
	return e
}

// Registry returns the engine's workflows.
func (e *Engine) Registry() *Registry { return e.registry }

// Now returns the engine's clock reading.
func (e *Engine) Now() time.Time { return e.now() }

// StartParams describes a run to start.
type StartParams struct {
	Workflow    string
	BusinessKey string
	Input       json.RawMessage
	StartedBy   string
	// Internal is set only by the service of an Options.Internal workflow,
	// which alone may start it; nothing a user sends sets it.
	Internal bool
}

// checkStart validates p for Start and StartInline and fills its defaults
// (the trimmed key, "{}" input, "system" starter), returning the workflow's
// definition.
func (e *Engine) checkStart(p StartParams) (*Definition, StartParams, error) {
	def, ok := e.registry.Get(p.Workflow)
	if !ok {
		return nil, p, fmt.Errorf("%w %q (known: %s)", ErrUnknownWorkflow, p.Workflow, strings.Join(e.registry.Names(), ", "))
	}
	if def.Options.Internal && !p.Internal {
		return nil, p, fmt.Errorf("%w: %s is built in and started only by its own service (approvals: POST /api/v1/approvals, the MCP server or countersign ask)",
			ErrInvalidInput, p.Workflow)
	}
	p.BusinessKey = strings.TrimSpace(p.BusinessKey)
	if p.BusinessKey == "" || len(p.BusinessKey) > 200 {
		return nil, p, fmt.Errorf("%w: business key must be 1 to 200 characters", ErrInvalidInput)
	}
	if len(p.Input) == 0 {
		p.Input = json.RawMessage("{}")
	}
	if strings.ContainsRune(p.BusinessKey, 0) || bytes.Contains(p.Input, []byte(`\u0000`)) {
		return nil, p, fmt.Errorf("%w: NUL characters cannot be stored", ErrInvalidInput)
	}
	if err := def.check(p.Input); err != nil {
		return nil, p, err
	}
	if p.StartedBy == "" {
		p.StartedBy = "system"
	}
	return def, p, nil
}

// Start creates a run and its first job in one transaction. Starting a
// workflow again with the same business key returns the existing run and
// created=false. Returns ErrUnknownWorkflow or ErrInvalidInput for bad
// parameters, having written nothing.
func (e *Engine) Start(ctx context.Context, p StartParams) (run *store.Run, created bool, err error) {
	def, p, err := e.checkStart(p)
	if err != nil {
		return nil, false, err
	}
	type result struct {
		run     *store.Run
		created bool
	}
	ctx, span, traceParent := e.traceStart(ctx, p) // trace.go
	defer func() { traceStarted(span, run, created, err) }()
	res, err := store.WithTxV(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) (result, error) {
		run, created, err := store.RunInsert(ctx, tx, store.RunInsertParams{
			Workflow: p.Workflow, Version: def.Version(), BusinessKey: p.BusinessKey, Input: p.Input, StartedBy: p.StartedBy,
			TraceParent: traceParent,
		})
		if err != nil || !created {
			return result{run, created}, err
		}
		if err := e.scheduler.EnqueueRun(ctx, tx, run.ID, 0); err != nil {
			return result{}, err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: p.StartedBy, Subject: audit.RunSubject(run.ID), RunID: run.ID,
			Details: audit.RunStarted{Workflow: run.Workflow, BusinessKey: run.BusinessKey, Version: run.Version}}); err != nil {
			return result{}, err
		}
		return result{run, true}, nil
	})
	if err != nil {
		return nil, false, err
	}
	if res.created {
		// After the commit, as a completion's (Engine.complete says why).
		if err := e.signals.Send(notify.Message{Type: notify.KindRun, ID: res.run.ID, Status: string(res.run.Status)}); err != nil {
			e.logger.Warn("notify run started", "run", res.run.ID, "err", err)
		}
	}
	return res.run, res.created, nil
}

// Job identifies one River job's execution of a run.
type Job struct {
	RunID       string
	Seq         int
	Attempt     int
	MaxAttempts int
	// Jobless: the run has no River job of its own (ExecuteNext deleted
	// it), so none is put back when the worker stops (release).
	Jobless bool
	// Next, when set, lets the execution claim the next ready run in the
	// statement that completes its own (Handoff).
	Next *Handoff
}

// Handoff carries a run from one execution to the next in a job that goes
// on with the next ready runs (jobs.RunWorker) for a while: an execution
// whose run completes while the chain is open claims the next run of
// Queue's jobs of Kind in the same round trip and commit
// (store.RunCompleteClaimNext), and ExecuteNext executes it. A run claimed
// and not executed must be handed back (Engine.ReleaseHandoff).
type Handoff struct {
	Queue, Kind string
	// For is how long the chain stays open after the job's own run: Until
	// is set to that at the first completion (or the first Open), unless
	// set already.
	For   time.Duration
	Until time.Time

	run     *store.Run
	history []*store.Step
	owner   string
}

// Pending reports whether h holds a claimed run not executed yet.
func (h *Handoff) Pending() bool { return h != nil && h.run != nil }

// Open reports whether the chain goes on: a run is to be executed, or
// its time is not up.
func (h *Handoff) Open() bool {
	if h.Until.IsZero() {
		h.Until = time.Now().Add(h.For)
	}
	return h.Pending() || time.Now().Before(h.Until)
}

// claims reports whether an execution completing its run now claims the
// next one.
func (h *Handoff) claims() bool { return h != nil && !h.Pending() && h.Open() }

// CompleteFunc completes the River job inside the transaction that parks
// the run (a gate, a wait, a retry's backoff) or ends it failed, so that the
// job ends with it: a waiting run holds no job. A run that completes is
// recorded in one statement and its job left to River's batched completer
// (Execute returns nil): a job that runs again because a crash came between
// the two finds the run completed, claims nothing and does nothing.
type CompleteFunc func(ctx context.Context, tx pgx.Tx) error

// errLeaseLost cancels an execution whose run was handed on: its lease
// lapsed (a stalled process, a lost database connection) and the sweeper gave
// the run to a new job.
var errLeaseLost = errors.New("run lease lost")

// Execute runs (or replays) a run's workflow function for one job. It returns
// an error only when River should retry the job.
//
// The execution holds a lease on the run (a fencing token and an expiry) from
// its claim, renewed while it works. Every record it makes is refused once it
// has lost the lease, so that a worker presumed dead and handed over cannot
// record a step twice even if it was only slow.
func (e *Engine) Execute(ctx context.Context, job Job, complete CompleteFunc) (err error) {
	if complete == nil {
		complete = func(context.Context, pgx.Tx) error { return nil }
	}
	owner := uuid.NewString()
	run, history, err := store.RunClaimHistory(ctx, e.pool, job.RunID, job.Seq, claimable, owner, e.lease)
	if errors.Is(err, store.ErrNotFound) {
		return nil // final, waiting, cancelled, resumed by a later job or held by a live execution
	}
	if err != nil {
		return err
	}
	return e.executeClaimed(ctx, run, history, owner, job, complete)
}

// executeClaimed runs the workflow function of a run this execution has
// claimed (as owner), from its recorded history, until it ends or parks,
// renewing the lease meanwhile: the body of Execute after its claim, and of
// Inline.Execute for a run born claimed.
func (e *Engine) executeClaimed(ctx context.Context, run *store.Run, history []*store.Step, owner string, job Job, complete CompleteFunc) (err error) {
	ctx, stop := context.WithCancelCause(ctx)
	renewed := make(chan struct{})
	// The renewal gets ctx as it is now: ctx is reassigned below.
	go func(ctx context.Context) { defer close(renewed); e.renew(ctx, stop, run.ID, owner) }(ctx)
	defer func() { stop(nil); <-renewed }()

	x := &execution{engine: e, run: run, owner: owner, seen: map[string]int{}, modelCalls: run.ModelCalls, tokens: run.TokensUsed,
		history: history, jobless: job.Jobless, handoff: job.Next}
	ctx, span := e.traceExecution(ctx, run, job) // trace.go
	defer func() { traceExecuted(span, x, err) }()
	// Parking a run for a human ends the execution's hold on it, in the
	// parking transaction, and only if it still holds it.
	x.complete = func(ctx context.Context, tx pgx.Tx) error {
		if err := store.RunLeaseRelease(ctx, tx, run.ID, owner); errors.Is(err, store.ErrNotFound) {
			return ErrCancelled
		} else if err != nil {
			return err
		}
		return complete(ctx, tx)
	}
	def, ok := e.registry.GetVersion(run.Workflow, run.Version)
	if !ok {
		return e.finish(ctx, x, complete, e.unregistered(run), job)
	}
	x.def = def
	if run.CompensationCause != nil { // failed, rejected or cancelled: its undos run, not its function
		return e.compensate(ctx, x, complete, job)
	}
	out, runErr := def.run(withExecution(ctx, x), run.Input)
	if x.suspended {
		return nil
	}
	if errors.Is(runErr, ErrCancelled) || errors.Is(context.Cause(ctx), errLeaseLost) {
		return nil // cancelled, or handed to another job: this one has nothing left to do
	}
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		// Shutting down: River puts the job back without spending an attempt
		// and the run, still "running", is claimed again by the next worker,
		// at once since this execution gives up its lease.
		return e.release(ctx, x, ctx.Err())
	}
	if runErr == nil {
		return e.complete(ctx, x, out, complete)
	}
	return e.finish(ctx, x, complete, runErr, job)
}

// Flush waits until the signals the engine queued after its commits have
// been sent: the process calls it before it closes the pool.
func (e *Engine) Flush() { e.signals.Flush() }

// renew extends the execution's lease every renewEvery until ctx ends. When
// the run is no longer the execution's, or the lease ran out without a
// successful renewal, it stops the execution.
func (e *Engine) renew(ctx context.Context, stop context.CancelCauseFunc, runID, owner string) {
	t := time.NewTicker(e.renewEvery)
	defer t.Stop()
	held := time.Now().Add(e.lease)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, e.renewEvery)
		err := store.RunLeaseRenew(rctx, e.pool, runID, owner, e.lease)
		cancel()
		switch {
		case err == nil:
			held = time.Now().Add(e.lease)
		case errors.Is(err, store.ErrNotFound):
			stop(errLeaseLost)
			return
		case time.Now().After(held):
			e.logger.Warn("run lease expired without renewal", "run", runID, "err", err)
			stop(errLeaseLost)
			return
		}
	}
}

// release gives up the execution's lease before returning err, so that the
// job's next attempt, or another worker, can claim the run without waiting
// for the sweeper.
func (e *Engine) release(ctx context.Context, x *execution, err error) error {
	ctx = context.WithoutCancel(ctx)
	if x.jobless && errors.Is(err, context.Canceled) {
		// Shutting down with no job of its own to put back (ExecuteNext
		// deleted it): one is queued for the run, as River puts a job back,
		// rather than leaving the run to the sweeper after its lease, which
		// would count a recovery for every stop (MaxRecoveries).
		rerr := store.WithTx(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) error {
			if err := store.RunLeaseRelease(ctx, tx, x.run.ID, x.owner); err != nil {
				return err
			}
			return e.scheduler.EnqueueRun(ctx, tx, x.run.ID, x.run.ResumeSeq)
		})
		if rerr != nil && !errors.Is(rerr, store.ErrNotFound) {
			e.logger.Warn("release run lease", "run", x.run.ID, "err", rerr)
		}
		return err
	}
	if rerr := store.RunLeaseRelease(ctx, e.pool, x.run.ID, x.owner); rerr != nil && !errors.Is(rerr, store.ErrNotFound) {
		e.logger.Warn("release run lease", "run", x.run.ID, "err", rerr)
	}
	return err
}

// complete records a run's output (complete, the job's CompleteFunc, is
// used only if the output cannot be encoded and the run fails). It runs on a
// context that is not cancelled with the job's: a result that arrives as
// River's job timeout fires is still recorded rather than computed again.
func (e *Engine) complete(ctx context.Context, x *execution, out any, complete CompleteFunc) error {
	run := x.run
	raw, err := json.Marshal(out)
	if err != nil {
		return e.finish(ctx, x, complete, &Failure{Code: "bad_output", Message: err.Error()}, Job{})
	}
	// One statement, one commit: the run's last pure steps and its output,
	// and, in a job that goes on, the next ready run's claim.
	// River completes the job once Execute returns (CompleteFunc).
	ctx = context.WithoutCancel(ctx)
	if h := x.handoff; h.claims() {
		owner := uuid.NewString()
		completed, next, history, err := store.RunCompleteClaimNext(ctx, e.pool, run.ID, x.owner, raw, sourcesOf(vocab.RunCompleted),
			x.pending, store.Next{Queue: h.Queue, Kind: h.Kind, From: claimable, Owner: owner, Lease: e.lease})
		if err != nil {
			return err
		}
		if next != nil {
			h.run, h.history, h.owner = next, history, owner
		}
		if !completed {
			return nil // cancelled or handed on meanwhile: leave it to its new state
		}
	} else {
		err = store.RunComplete(ctx, e.pool, run.ID, x.owner, raw, sourcesOf(vocab.RunCompleted), x.pending...)
		if errors.Is(err, store.ErrNotFound) {
			return nil // cancelled or handed on meanwhile: leave it to its new state
		}
		if err != nil {
			return err
		}
	}
	// Signalled after the commit, not in it: a notifying transaction holds the
	// notification queue's lock through its WAL flush, which would serialize
	// every run's last commit. A lost signal only delays a badge; pages also
	// refresh whenever their stream reconnects. Coalesced: under load one
	// statement carries the signals of many runs.
	if err := e.signals.Send(notify.Message{Type: notify.KindRun, ID: run.ID, Status: string(vocab.RunCompleted)}); err != nil {
		e.logger.Warn("notify run completed", "run", run.ID, "err", err)
	}
	return nil
}

// finish records a failed attempt: the run fails for good on a permanent error,
// a code its retry policy never retries, or its last attempt, and otherwise
// waits for its retry, scheduled at the policy's backoff (retry.go). Crashes
// are not attempts: the step's own attempt count decides, and River's
// attempt only when River will not try the job again.
func (e *Engine) finish(ctx context.Context, x *execution, complete CompleteFunc, runErr error, job Job) error {
	run := x.run
	x.flush(ctx)
	f := failureOf(runErr)
	final := f != nil || job.Attempt >= job.MaxAttempts
	if f == nil {
		plan := x.planRetry(runErr)
		if plan.final || final {
			final = true
			if !plan.final {
				plan.code = CodeAttemptsExhausted
			}
		} else if scheduled, err := e.retryLater(ctx, x, complete, runErr, plan); scheduled {
			return err
		}
		f = &Failure{Code: plan.code, Message: runErr.Error()}
	}
	if final {
		// Effects with an undo were applied: the run undoes them instead.
		if started, err := e.compensateFailure(ctx, x, complete, f); started || err != nil {
			return err
		}
	}
	status := vocab.RunRetrying
	if final {
		status = vocab.RunFailed
	}
	// Recorded even when the job's context has ended (River's job timeout):
	// otherwise the failure would be lost and the run left running.
	err := store.WithTx(context.WithoutCancel(ctx), e.pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := store.RunFail(ctx, tx, run.ID, x.owner, string(status), f.Code, f.Message, sourcesOf(status), e.lease); errors.Is(err, store.ErrNotFound) {
			if final {
				return complete(ctx, tx) // cancelled or handed on meanwhile
			}
			return nil
		} else if err != nil {
			return err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(run.ID), RunID: run.ID,
			Details: audit.RunFailed{Code: f.Code, Message: f.Message, Final: final,
				Attempt: &audit.Attempt{Attempt: run.Attempt, Step: run.CurrentStep}}}); err != nil {
			return err
		}
		if final {
			if err := complete(ctx, tx); err != nil {
				return err
			}
			if err := e.noticeRunFailed(ctx, tx, run.ID, f); err != nil {
				return err
			}
		}
		return notifyRun(ctx, tx, run.ID, status)
	})
	if err != nil {
		return err
	}
	if final {
		e.logger.Info("run failed", "run", run.ID, "code", f.Code, "message", f.Message)
		return nil
	}
	return runErr
}

// Cancel ends a run that has not ended, from any other status. A step in
// flight finishes, but its result is discarded and no later durable step
// runs (pure steps may, until the next durable record is refused).
// Returns ErrNotFound or ErrFinal.
func (e *Engine) Cancel(ctx context.Context, runID, actor string) error {
	return store.WithTx(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) error {
		run, err := store.RunGetForUpdate(ctx, tx, runID)
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if run.Status.Final() {
			return fmt.Errorf("%w (%s)", ErrFinal, run.Status)
		}
		if run.CompensationCause != nil {
			return fmt.Errorf("%w (compensating)", ErrFinal)
		}
		// A run that applied effects with an undo undoes them (compensate.go)
		// and ends compensated; any other ends cancelled here.
		to := vocab.RunCancelled
		if started, err := e.startCompensation(ctx, tx, run, compensateOnCancel, CauseCancelled, "", "cancelled",
			"cancelled by "+actor); err != nil {
			return err
		} else if started {
			to = vocab.RunQueued
		} else if err := transition(ctx, tx, run, vocab.RunCancelled); err != nil {
			return err
		}
		if err := approval.CancelForRun(ctx, tx, runID, actor); err != nil {
			return err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: actor, Subject: audit.RunSubject(runID), RunID: runID,
			Details: audit.RunCancelled{From: string(run.Status)}}); err != nil {
			return err
		}
		return notifyRun(ctx, tx, runID, to)
	})
}

func notifyRun(ctx context.Context, tx store.DBTX, runID string, status vocab.RunStatus) error {
	return notify.Send(ctx, tx, notify.Message{Type: notify.KindRun, ID: runID, Status: string(status)})
}
