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
	"github.com/countersign/countersign/vocab"
)

// sweepBatch bounds the runs one sweep transaction handles.
const sweepBatch = 200

// Recovered counts what one sweep did.
type Recovered struct {
	HandedOn int // runs given a new job
	Failed   int // runs ended as failed
	Waiting  int // runs whose job can still execute, looked at again later
	Woken    int // parked runs past their wake-up time whose wake job was lost (timer.go)
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
	woken, err := e.wakeLost(ctx)
	if err != nil {
		return total, err
	}
	total.Woken = woken
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

// sweep is what one sweep transaction did, and what is left to do after it
// commits.
type sweep struct {
	res   Recovered
	n     int        // runs locked
	jobs  []RunRef   // runs handed on, enqueued in the transaction
	ended []endedRun // runs failed, logged after the commit
}

type endedRun struct{ id, code string }

// recoverBatch sweeps up to sweepBatch runs in one transaction; it returns
// what it did and how many runs it locked.
func (e *Engine) recoverBatch(ctx context.Context) (Recovered, int, error) {
	var s sweep
	err := store.WithTx(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) error {
		s = sweep{}
		orphans, err := store.RunOrphansLock(ctx, tx, e.lease, sweepBatch)
		if err != nil {
			return err
		}
		s.n = len(orphans)
		for _, o := range orphans {
			if err := e.recoverOrphan(ctx, tx, o, &s); err != nil {
				return err
			}
		}
		return e.scheduler.EnqueueRuns(ctx, tx, s.jobs)
	})
	if err != nil {
		return Recovered{}, 0, fmt.Errorf("sweep runs: %w", err)
	}
	for _, f := range s.ended {
		e.logger.Info("run failed", "run", f.id, "code", f.code)
	}
	return s.res, s.n, nil
}

// recoverOrphan leaves a run whose job can still execute for a later look,
// fails one that cannot be recovered, and hands the others on.
func (e *Engine) recoverOrphan(ctx context.Context, tx pgx.Tx, o store.Orphan, s *sweep) error {
	if o.LiveJob {
		if err := store.RunRecheck(ctx, tx, o.ID, o.ResumeSeq, e.lease); err != nil {
			return err
		}
		s.res.Waiting++
		return nil
	}
	cause := lostCause(o)
	if f := e.orphanFailure(o, cause); f != nil {
		return e.failOrphan(ctx, tx, o, cause, f, s)
	}
	return e.handOn(ctx, tx, o, cause, s)
}

// lostCause says why no execution holds the run, as its audit event records.
func lostCause(o store.Orphan) string {
	switch {
	case o.JobState == "discarded":
		return "job_discarded"
	case o.JobState == "cancelled":
		return "job_cancelled"
	case o.HadOwner:
		return "lease_expired"
	case o.JobState == "" || o.JobState == "completed":
		return "job_missing"
	}
	return "worker_lost_before_claim"
}

// orphanFailure returns why the run must fail rather than be handed on, or
// nil when it may be handed on.
func (e *Engine) orphanFailure(o store.Orphan, cause string) *Failure {
	switch {
	case cause == "job_discarded":
		return &Failure{Code: "attempts_exhausted", Message: "River discarded the run's job after its last attempt"}
	case cause == "job_cancelled":
		return &Failure{Code: "job_cancelled", Message: "the run's job was cancelled in the queue"}
	case o.Recoveries >= e.maxRecoveries:
		return &Failure{Code: "worker_lost", Message: fmt.Sprintf("the run lost its worker %d times", o.Recoveries+1)}
	}
	return nil
}

// failOrphan ends the run as failed with f, unless it moved since it was
// locked.
func (e *Engine) failOrphan(ctx context.Context, tx pgx.Tx, o store.Orphan, cause string, f *Failure, s *sweep) error {
	err := store.RunFailOrphan(ctx, tx, o.ID, o.ResumeSeq, f.Code, f.Message, sourcesOf(vocab.RunFailed), e.lease)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(o.ID), RunID: o.ID,
		Details: audit.RunFailed{Code: f.Code, Message: f.Message, Final: true,
			Recovery: &audit.Recovery{Cause: cause, Recoveries: o.Recoveries}}}); err != nil {
		return err
	}
	if err := notifyRun(ctx, tx, o.ID, vocab.RunFailed); err != nil {
		return err
	}
	if err := e.noticeRunFailed(ctx, tx, o.ID, f); err != nil {
		return err
	}
	s.ended = append(s.ended, endedRun{o.ID, f.Code})
	s.res.Failed++
	return nil
}

// handOn gives the run a new resume sequence, which fences off the lost
// execution, and adds it to the runs the sweep enqueues, unless it moved
// since it was locked.
func (e *Engine) handOn(ctx context.Context, tx pgx.Tx, o store.Orphan, cause string, s *sweep) error {
	seq, err := store.RunRecover(ctx, tx, o.ID, o.ResumeSeq, e.lease)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(o.ID), RunID: o.ID,
		Details: audit.RunRecovered{Cause: cause, Status: string(o.Status), FromSeq: o.ResumeSeq, Seq: seq, Recoveries: o.Recoveries + 1}}); err != nil {
		return err
	}
	s.jobs = append(s.jobs, RunRef{ID: o.ID, Seq: seq})
	s.res.HandedOn++
	return nil
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
		case r.HandedOn > 0 || r.Failed > 0 || r.Woken > 0:
			e.logger.Info("swept runs", slog.Int("handed_on", r.HandedOn), slog.Int("failed", r.Failed), slog.Int("woken", r.Woken))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
