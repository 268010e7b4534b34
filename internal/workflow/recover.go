package workflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
)

// sweepBatch bounds the runs one sweep transaction handles.
const sweepBatch = 200

// Recovered counts what one sweep did.
type Recovered struct {
	HandedOn int // runs given a new job
	Failed   int // runs ended as failed
	Waiting  int // runs whose job can still execute, looked at again later
}

// Recover sweeps the runs that no execution holds (their lease lapsed, or
// their worker died before claiming them) and that no job will execute:
// each is handed to a new job under a new resume sequence, which fences off
// the lost execution, or fails when River discarded its job
// (attempts_exhausted) or it lost its worker MaxRecoveries times
// (worker_lost). A recovery spends none of the run's error attempts and is
// audited as run.recovered. Several processes may sweep at once: rows another
// sweeper holds are skipped and every change is conditional on the resume
// sequence it saw.
func (e *Engine) Recover(ctx context.Context) (Recovered, error) {
	var total Recovered
	for range 100 { // a bound, in case rows keep turning up faster than a sweep

		r, n, err := e.recoverBatch(ctx)
		total.HandedOn += r.HandedOn
		total.Failed += r.Failed
		total.Waiting += r.Waiting
		// Another sweeper may hold rows this one skipped, so a short batch
		// does not mean nothing is left; a batch that changed nothing does.
		if err != nil || n == 0 || r.HandedOn+r.Failed == 0 {
			return total, err
		}
	}
	return total, nil
}

func (e *Engine) recoverBatch(ctx context.Context) (Recovered, int, error) {
	type failed struct{ id, code string }
	var res Recovered
	var ended []failed
	var n int
	err := store.WithTx(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) error {
		res, ended = Recovered{}, nil
		orphans, err := store.RunOrphansLock(ctx, tx, e.lease, sweepBatch)
		if err != nil {
			return err
		}
		n = len(orphans)
		var jobs []RunRef
		for _, o := range orphans {
			if o.LiveJob {
				if err := store.RunRecheck(ctx, tx, o.ID, o.ResumeSeq, e.lease); err != nil {
					return err
				}
				res.Waiting++
				continue
			}
			cause, f := e.orphanCause(o)
			if f != nil {
				err := store.RunFailOrphan(ctx, tx, o.ID, o.ResumeSeq, f.Code, f.Message, sourcesOf(store.RunFailed), e.lease)
				if errors.Is(err, store.ErrNotFound) {
					continue
				} else if err != nil {
					return err
				}
				if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(o.ID), RunID: o.ID,
					Details: audit.RunFailed{Code: f.Code, Message: f.Message, Final: true,
						Recovery: &audit.Recovery{Cause: cause, Recoveries: o.Recoveries}}}); err != nil {
					return err
				}
				if err := notifyRun(ctx, tx, o.ID, store.RunFailed); err != nil {
					return err
				}
				ended = append(ended, failed{o.ID, f.Code})
				res.Failed++
				continue
			}
			seq, err := store.RunRecover(ctx, tx, o.ID, o.ResumeSeq, e.lease)
			if errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(o.ID), RunID: o.ID,
				Details: audit.RunRecovered{Cause: cause, Status: o.Status, FromSeq: o.ResumeSeq, Seq: seq, Recoveries: o.Recoveries + 1}}); err != nil {
				return err
			}
			jobs = append(jobs, RunRef{ID: o.ID, Seq: seq})
			res.HandedOn++
		}
		return e.scheduler.EnqueueRuns(ctx, tx, jobs)
	})
	if err != nil {
		return Recovered{}, 0, fmt.Errorf("sweep runs: %w", err)
	}
	for _, f := range ended {
		e.logger.Info("run failed", "run", f.id, "code", f.code)
	}
	return res, n, nil
}

// RunRecovery sweeps every interval until ctx ends (Recover). Every worker
// process runs one, so that recovery does not wait for a leader election
// after the leader itself was the worker that died.
func (e *Engine) RunRecovery(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r, err := e.Recover(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			e.logger.Warn("sweep runs", "err", err)
		case r.HandedOn > 0 || r.Failed > 0:
			e.logger.Info("swept runs", slog.Int("handed_on", r.HandedOn), slog.Int("failed", r.Failed))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// orphanCause says why a run lost its execution and, when it must not be
// handed on, the failure that ends it.
func (e *Engine) orphanCause(o store.Orphan) (cause string, f *Failure) {
	cause = "worker_lost_before_claim"
	switch {
	case o.JobState == "discarded":
		cause = "job_discarded"
	case o.JobState == "cancelled":
		cause = "job_cancelled"
	case o.HadOwner:
		cause = "lease_expired"
	case o.JobState == "" || o.JobState == "completed":
		cause = "job_missing"
	}
	switch {
	case cause == "job_discarded":
		f = &Failure{Code: "attempts_exhausted", Message: "River discarded the run's job after its last attempt"}
	case cause == "job_cancelled":
		f = &Failure{Code: "job_cancelled", Message: "the run's job was cancelled in the queue"}
	case o.Recoveries >= e.maxRecoveries:
		f = &Failure{Code: "worker_lost", Message: fmt.Sprintf("the run lost its worker %d times", o.Recoveries+1)}
	}
	return cause, f
}
