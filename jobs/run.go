// Package jobs adapts River: Countersign's workers, one file per job kind,
// which call the engine, and the Scheduler that inserts their jobs.
package jobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/countersign/countersign/internal/workflow"
)

// RunArgs executes (or resumes) one run. Seq is the run's resume sequence: a
// decision bumps it, so each resume is a distinct job, and a duplicate insert
// for the same resume is refused by River's uniqueness.
type RunArgs struct {
	RunID string `json:"run_id" river:"unique"`
	Seq   int    `json:"seq" river:"unique"`
}

// Kind implements river.JobArgs.
func (RunArgs) Kind() string { return "workflow_run" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (RunArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: RunMaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// RunMaxAttempts is how often a run's job is tried before the run fails.
const RunMaxAttempts = 5

// RunTimeout bounds one execution of a run by default: several model calls fit in it.
const RunTimeout = 10 * time.Minute

// RunWorker executes runs through the engine.
type RunWorker struct {
	river.WorkerDefaults[RunArgs]
	Engine *workflow.Engine
	// JobTimeout bounds one execution. River's rescuer also waits at least
	// this long before it presumes a running job's worker dead.
	JobTimeout time.Duration
}

// Timeout implements river.Worker.
func (w *RunWorker) Timeout(*river.Job[RunArgs]) time.Duration {
	if w.JobTimeout > 0 {
		return w.JobTimeout
	}
	return RunTimeout
}

// RunChainFor is how long a run's job goes on executing the next ready runs
// after its own (workflow.Engine.ExecuteNext): long enough that, with runs
// queued, one job carries many; short enough that a stopping worker, which
// waits for its jobs, is not held for long.
const RunChainFor = time.Second

// Work implements river.Worker: the engine completes the job in the
// transaction that parks the run (a gate, a wait, a retry's backoff) or
// fails it; a completed run's job is left to River's batched completer
// (workflow.CompleteFunc says why that is safe). Then, for up to RunChainFor,
// the worker executes the next ready runs whose jobs no worker has fetched,
// deleting those jobs, until none is ready: River's fetch, running mark and
// completion of a job per run were a large share of a run's database work.
func (w *RunWorker) Work(ctx context.Context, job *river.Job[RunArgs]) error {
	// The run that completes claims the next one in its last statement
	// while the chain has time left (workflow.Handoff); a claimed run is
	// executed even after that, or handed back if the worker is stopping.
	h := &workflow.Handoff{Queue: job.Queue, Kind: job.Kind, For: RunChainFor}
	defer func() {
		if err := w.Engine.ReleaseHandoff(ctx, h); err != nil {
			slog.Warn("hand back a claimed run", "err", err)
		}
	}()
	err := w.Engine.Execute(ctx, workflow.Job{
		RunID: job.Args.RunID, Seq: job.Args.Seq, Attempt: job.Attempt, MaxAttempts: job.MaxAttempts, Next: h,
	}, func(ctx context.Context, tx pgx.Tx) error {
		_, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		return err
	})
	if err != nil {
		return err
	}
	for ctx.Err() == nil && h.Open() {
		// A chained run's failure is its own (recorded, or left to the
		// sweeper), not this job's, which is done: the chain just stops.
		cctx, cancel := chainContext(ctx, w.Timeout(job))
		ok, err := w.Engine.ExecuteNext(cctx, h)
		cancel()
		if !ok || err != nil {
			break
		}
	}
	return nil
}

// chainContext is the context of a run executed after the job's own
// (ExecuteNext): a timeout of its own, as its own job would have had, not
// what the runs before it left of this job's (a run given seconds would
// spend an attempt, or fail, on a deadline that is not its); still
// cancelled when the worker stops or the job is cancelled, which the
// engine answers by giving up the lease without spending an attempt.
func chainContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			cancel()
		}
	})
	return cctx, func() { stop(); cancel() }
}
