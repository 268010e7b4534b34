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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
)

// Enqueuer puts run jobs on the queue inside the caller's transaction, so that
// a job exists exactly when the state change that needs it commits.
type Enqueuer interface {
	// EnqueueRun inserts the job that executes run id for resume sequence seq.
	EnqueueRun(ctx context.Context, tx pgx.Tx, runID string, seq int) error
	// EnqueueRuns does the same for many runs with one insert.
	EnqueueRuns(ctx context.Context, tx pgx.Tx, runs []RunRef) error
}

// RunRef names a run and the resume sequence its next job carries.
type RunRef struct {
	ID  string
	Seq int
}

// PolicySource returns the policy in force.
type PolicySource interface {
	Active(ctx context.Context) (*policy.Policy, error)
}

// StaticPolicy is a PolicySource that always returns the same policy.
type StaticPolicy struct{ Policy *policy.Policy }

// Active implements PolicySource.
func (s StaticPolicy) Active(context.Context) (*policy.Policy, error) { return s.Policy, nil }

// RequestHook runs in the transaction that creates a human approval request:
// the batch and deadline machinery hangs off it.
type RequestHook func(ctx context.Context, tx pgx.Tx, req *store.Request, d policy.Decision) error

// Config wires an Engine. The enqueuer and the request hook are set after
// construction (SetEnqueuer, SetRequestHook): the River client behind them
// needs the workers that need the engine.
type Config struct {
	Pool     *pgxpool.Pool
	Registry *Registry
	Policies PolicySource
	Model    ai.Provider
	Logger   *slog.Logger
	Now      func() time.Time
	// MaxStepOutput is the largest result, in bytes of JSON, that a step,
	// model call or effect may record and the largest action a run may
	// propose (COUNTERSIGN_MAX_STEP_OUTPUT); 0 means DefaultMaxStepOutput. A
	// workflow's Options.MaxStepOutput overrides it.
	MaxStepOutput int
}

// DefaultMaxStepOutput is the output limit when none is configured: far above
// any real proposal, far below what would stall a review page.
const DefaultMaxStepOutput = 256 << 10

// Engine starts, executes, decides and cancels workflow runs.
type Engine struct {
	pool      *pgxpool.Pool
	registry  *Registry
	policies  PolicySource
	model     ai.Provider
	enqueuer  Enqueuer
	onRequest RequestHook
	logger    *slog.Logger
	now       func() time.Time
	maxOutput int
}

// New returns an Engine. Pool and Registry are required; call SetEnqueuer
// before starting runs.
func New(cfg Config) *Engine {
	e := &Engine{pool: cfg.Pool, registry: cfg.Registry, policies: cfg.Policies, model: cfg.Model,
		logger: cfg.Logger, now: cfg.Now, maxOutput: cfg.MaxStepOutput}
	if e.maxOutput <= 0 {
		e.maxOutput = DefaultMaxStepOutput
	}
	if e.policies == nil {
		e.policies = StaticPolicy{Policy: policy.Default()}
	}
	if e.model == nil {
		e.model = ai.NewOffline()
	}
	if e.logger == nil {
		e.logger = slog.Default()
	}
	if e.now == nil {
		e.now = time.Now
	}
	return e
}

// SetEnqueuer sets how run jobs are enqueued.
func (e *Engine) SetEnqueuer(q Enqueuer) { e.enqueuer = q }

// SetRequestHook sets the hook run when a human approval request is created.
func (e *Engine) SetRequestHook(h RequestHook) { e.onRequest = h }

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
}

// Start creates a run and its first job in one transaction. Starting a
// workflow again with the same business key returns the existing run and
// created=false. Returns ErrUnknownWorkflow or ErrInvalidInput for bad
// parameters, having written nothing.
func (e *Engine) Start(ctx context.Context, p StartParams) (run *store.Run, created bool, err error) {
	def, ok := e.registry.Get(p.Workflow)
	if !ok {
		return nil, false, fmt.Errorf("%w %q (known: %s)", ErrUnknownWorkflow, p.Workflow, strings.Join(e.registry.Names(), ", "))
	}
	p.BusinessKey = strings.TrimSpace(p.BusinessKey)
	if p.BusinessKey == "" || len(p.BusinessKey) > 200 {
		return nil, false, fmt.Errorf("%w: business key must be 1 to 200 characters", ErrInvalidInput)
	}
	if len(p.Input) == 0 {
		p.Input = json.RawMessage("{}")
	}
	if strings.ContainsRune(p.BusinessKey, 0) || bytes.Contains(p.Input, []byte(`\u0000`)) {
		return nil, false, fmt.Errorf("%w: NUL characters cannot be stored", ErrInvalidInput)
	}
	if err := def.check(p.Input); err != nil {
		return nil, false, err
	}
	if p.StartedBy == "" {
		p.StartedBy = "system"
	}
	type result struct {
		run     *store.Run
		created bool
	}
	res, err := store.WithTxV(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) (result, error) {
		run, created, err := store.RunInsert(ctx, tx, store.RunInsertParams{
			Workflow: p.Workflow, BusinessKey: p.BusinessKey, Input: p.Input, StartedBy: p.StartedBy,
		})
		if err != nil || !created {
			return result{run, created}, err
		}
		if err := e.enqueuer.EnqueueRun(ctx, tx, run.ID, 0); err != nil {
			return result{}, err
		}
		if _, err := store.AuditAppend(ctx, tx, p.StartedBy, "run.started", "run", run.ID, &run.ID,
			map[string]any{"workflow": run.Workflow, "business_key": run.BusinessKey}); err != nil {
			return result{}, err
		}
		return result{run, true}, notifyRun(ctx, tx, run.ID, run.Status)
	})
	if err != nil {
		return nil, false, err
	}
	return res.run, res.created, nil
}

// Job identifies one River job's execution of a run.
type Job struct {
	RunID       string
	Seq         int
	Attempt     int
	MaxAttempts int
}

// CompleteFunc completes the River job inside the transaction that records
// the run's outcome, so that outcome and job completion commit together.
type CompleteFunc func(ctx context.Context, tx pgx.Tx) error

// Execute runs (or replays) a run's workflow function for one job. It returns
// an error only when River should retry the job.
func (e *Engine) Execute(ctx context.Context, job Job, complete CompleteFunc) error {
	if complete == nil {
		complete = func(context.Context, pgx.Tx) error { return nil }
	}
	run, err := store.RunClaim(ctx, e.pool, job.RunID, job.Seq, job.Attempt, claimable)
	if errors.Is(err, store.ErrNotFound) {
		return nil // final, waiting, cancelled or resumed by a later job: nothing to do
	}
	if err != nil {
		return err
	}
	def, ok := e.registry.Get(run.Workflow)
	if !ok {
		return e.finish(ctx, run, complete, &Failure{Code: "unknown_workflow",
			Message: fmt.Sprintf("workflow %q is not registered in this worker", run.Workflow)}, job)
	}
	history, err := store.StepList(ctx, e.pool, run.ID)
	if err != nil {
		return err
	}
	x := &execution{engine: e, run: run, def: def, history: history, complete: complete,
		seen: map[string]int{}, modelCalls: run.ModelCalls, tokens: run.TokensUsed}
	out, runErr := def.run(withExecution(ctx, x), run.Input)
	if x.suspended {
		return nil
	}
	if errors.Is(runErr, ErrCancelled) {
		return nil
	}
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		// Shutting down: River puts the job back without spending an attempt
		// and the run, still "running", is claimed again by the next worker.
		return ctx.Err()
	}
	if runErr == nil {
		return e.complete(ctx, run, out, complete)
	}
	return e.finish(ctx, run, complete, runErr, job)
}

func (e *Engine) complete(ctx context.Context, run *store.Run, out any, complete CompleteFunc) error {
	raw, err := json.Marshal(out)
	if err != nil {
		return e.finish(ctx, run, complete, &Failure{Code: "bad_output", Message: err.Error()}, Job{})
	}
	err = store.WithTx(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := store.RunComplete(ctx, tx, run.ID, raw, sourcesOf(store.RunCompleted)); errors.Is(err, store.ErrNotFound) {
			return complete(ctx, tx) // cancelled meanwhile: keep it cancelled
		} else if err != nil {
			return err
		}
		return complete(ctx, tx)
	})
	if err != nil {
		return err
	}
	// Signalled after the commit, not in it: a notifying transaction holds the
	// notification queue's lock through its WAL flush, which would serialize
	// every run's last commit. A lost signal only delays a badge; pages also
	// refresh whenever their stream reconnects.
	if err := notifyRun(ctx, e.pool, run.ID, store.RunCompleted); err != nil {
		e.logger.Warn("notify run completed", "run", run.ID, "err", err)
	}
	return nil
}

// finish records a failed attempt: the run fails for good on a permanent error
// or the last attempt, and otherwise waits for River's retry.
func (e *Engine) finish(ctx context.Context, run *store.Run, complete CompleteFunc, runErr error, job Job) error {
	f := failureOf(runErr)
	final := f != nil || job.Attempt >= job.MaxAttempts
	if f == nil {
		code := "step_error"
		if errors.Is(runErr, context.DeadlineExceeded) {
			code = "timeout"
		}
		if final {
			code = "attempts_exhausted"
		}
		f = &Failure{Code: code, Message: runErr.Error()}
	}
	status, kind := store.RunRetrying, "run.step_failed"
	if final {
		status, kind = store.RunFailed, "run.failed"
	}
	err := store.WithTx(context.WithoutCancel(ctx), e.pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := store.RunFail(ctx, tx, run.ID, status, f.Code, f.Message, sourcesOf(status)); errors.Is(err, store.ErrNotFound) {
			return nil // cancelled meanwhile
		} else if err != nil {
			return err
		}
		if _, err := store.AuditAppend(ctx, tx, "system", kind, "run", run.ID, &run.ID, map[string]any{
			"code": f.Code, "message": f.Message, "attempt": job.Attempt, "step": run.CurrentStep,
		}); err != nil {
			return err
		}
		if final {
			if err := complete(ctx, tx); err != nil {
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
// flight finishes, but its result is discarded and no later step runs.
// Returns ErrNotFound or ErrFinal.
func (e *Engine) Cancel(ctx context.Context, runID, actor string) error {
	return store.WithTx(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) error {
		run, err := store.RunGetForUpdate(ctx, tx, runID)
		if errors.Is(err, store.ErrNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if IsFinal(run.Status) {
			return fmt.Errorf("%w (%s)", ErrFinal, run.Status)
		}
		if err := transition(ctx, tx, run, store.RunCancelled); err != nil {
			return err
		}
		if err := store.RequestCancelForRun(ctx, tx, runID, actor); err != nil {
			return err
		}
		if err := store.BatchSettleForRun(ctx, tx, runID); err != nil {
			return err
		}
		if _, err := store.AuditAppend(ctx, tx, actor, "run.cancelled", "run", runID, &runID,
			map[string]any{"from": run.Status}); err != nil {
			return err
		}
		return notifyRun(ctx, tx, runID, store.RunCancelled)
	})
}

func notifyRun(ctx context.Context, tx store.DBTX, runID, status string) error {
	b, _ := json.Marshal(map[string]string{"type": "run", "id": runID, "status": status})
	return store.Notify(ctx, tx, string(b))
}
