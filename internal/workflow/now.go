package workflow

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// inlineWait bounds how long ExecuteNow waits for a worker that claimed the
// run first to park or finish it.
const inlineWait = 2 * time.Second

// ExecuteNow executes a run that Start just created in the caller's
// goroutine, so that a caller waiting for its first answer (the approvals
// API) gets it without a trip through the job queue. It claims the run as
// its first job would (resume sequence 0), with a lease like any execution:
// if the process dies meanwhile the lease lapses and the sweeper hands the
// run on. The River job Start enqueued then finds nothing to do. When a
// worker claimed the run first, it waits up to two seconds for that worker
// to park or finish it. It returns the run as it then stands; a failed
// attempt is left to River's retry, as a job's would be.
func (e *Engine) ExecuteNow(ctx context.Context, runID string) (*store.Run, error) {
	// No attempt limit here: a failed inline attempt leaves the run
	// retrying, and the job's own attempts decide when it fails for good.
	err := e.Execute(ctx, Job{RunID: runID, Seq: 0, Attempt: 1, MaxAttempts: math.MaxInt}, nil)
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	if err != nil {
		e.logger.Info("inline execution failed; River retries it", "run", runID, "err", err)
	}
	deadline := time.Now().Add(inlineWait)
	for {
		run, err := store.RunGet(ctx, e.pool, runID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, ErrNotFound
		} else if err != nil {
			return nil, err
		}
		if run.Status != vocab.RunQueued && run.Status != vocab.RunRunning || !time.Now().Before(deadline) {
			return run, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// OutputLimit is the largest result, in bytes of JSON, that a step of
// workflow may record, and the largest action it may propose: callers that
// take an action from outside check it before starting a run.
func (e *Engine) OutputLimit(workflow string) int { return e.outputLimit(workflow) }
