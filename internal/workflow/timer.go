package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// sleepRecord is a sleep step's recorded output.
type sleepRecord struct {
	WakeAt time.Time `json:"wake_at"`
}

// Sleep is a durable timer: the run waits d, holding no worker and no running
// job, and survives restarts meanwhile. The first time the run reaches it,
// the wake-up time is recorded, the run is parked as sleeping, a job is
// scheduled at that time, and the function unwinds with ErrSuspended (return
// it as it is); the replay after the wake-up returns nil here. A sleep that
// has already passed returns at once.
func Sleep(ctx context.Context, name string, d time.Duration) error {
	x, err := executionFrom(ctx)
	if err != nil {
		return err
	}
	return x.sleep(ctx, name, func() time.Time { return x.engine.now().Add(d) })
}

// SleepUntil is Sleep until t.
func SleepUntil(ctx context.Context, name string, t time.Time) error {
	x, err := executionFrom(ctx)
	if err != nil {
		return err
	}
	return x.sleep(ctx, name, func() time.Time { return t })
}

// sleep parks the run until the wake-up time recorded the first time it got
// here (wake computes it then, and only then: a replay keeps the first).
func (x *execution) sleep(ctx context.Context, name string, wake func() time.Time) (err error) {
	s, err := x.next(name, vocab.StepKindSleep)
	if err != nil {
		return err
	}
	if s.replayed() {
		return nil
	}
	if x.sandbox != nil {
		// A scripted run does not wait: the timer is recorded as passed.
		out, _ := json.Marshal(sleepRecord{WakeAt: wake().UTC()})
		return x.sandbox.keep(x, s, out, 0)
	}
	ctx, span := x.traceStep(ctx, s) // trace.go
	defer func() { traceStepped(span, err) }()
	var at time.Time
	cause := ""
	if s.prior != nil && s.prior.Status == vocab.StepWaiting && s.prior.WakeAt != nil {
		at, cause = *s.prior.WakeAt, "timer" // woken: due now, or early and parked again
	} else {
		at = wake().UTC()
	}
	if !x.engine.now().Before(at) {
		return x.withTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
			return x.recordWake(ctx, tx, s, sleepRecord{WakeAt: at}, cause, 0)
		})
	}
	out, _ := json.Marshal(sleepRecord{WakeAt: at})
	return x.parkWait(ctx, s, vocab.RunSleeping, out, &at, audit.RunSleeping{Step: name, WakeAt: at})
}

// parkWait parks the run at a durable wait in one transaction: the step
// waiting until at, the run in status under a new resume sequence, the job
// that wakes it at at (none when at is nil), the execution's lease and River
// job given up, the audit event. Only if the execution still holds the run
// (ErrCancelled otherwise). It returns ErrSuspended: the function unwinds.
func (x *execution) parkWait(ctx context.Context, s *slot, status vocab.RunStatus, out []byte, at *time.Time, why audit.Details) error {
	err := x.withTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		return x.parkWaitTx(ctx, tx, s, status, out, at, why)
	})
	if err != nil {
		return err
	}
	x.suspended = true
	return ErrSuspended
}

func (x *execution) parkWaitTx(ctx context.Context, tx pgx.Tx, s *slot, status vocab.RunStatus, out []byte, at *time.Time, why audit.Details) error {
	if err := x.flushTx(ctx, tx); err != nil {
		return err
	}
	if err := store.StepPark(ctx, tx, store.StepRecord{RunID: x.run.ID, Seq: s.seq, Name: s.name, Kind: s.kind,
		Output: out, Attempts: s.attempts, StartedAt: s.started}, at); err != nil {
		return err
	}
	seq, err := store.RunPark(ctx, tx, x.run.ID, x.owner, s.name, status, sourcesOf(status))
	if errors.Is(err, store.ErrNotFound) {
		return ErrCancelled
	} else if err != nil {
		return err
	}
	if at != nil {
		if err := x.engine.scheduler.ScheduleRun(ctx, tx, x.run.ID, seq, *at); err != nil {
			return fmt.Errorf("schedule wake-up: %w", err)
		}
	}
	if err := x.complete(ctx, tx); err != nil {
		return err
	}
	if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(x.run.ID), RunID: x.run.ID, Details: why}); err != nil {
		return err
	}
	return notifyRun(ctx, tx, x.run.ID, status)
}

// wakeGrace is how long past its wake-up time a parked run's job may take to
// run before the sweeper presumes it lost: River runs scheduled jobs within
// about a second of their time when a worker is up.
const wakeGrace = 30 * time.Second

// wakeLost queues parked runs whose wake job River discarded, cancelled or
// lost, once their wake-up time is wakeGrace past, each under a new resume
// sequence (which fences off the lost job), audited as run.recovered with
// cause wake_job_lost. It is part of the sweep (Recover).
func (e *Engine) wakeLost(ctx context.Context) (int, error) {
	var woken int
	err := store.WithTx(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) error {
		woken = 0
		parked, err := store.RunParkedOverdueLock(ctx, tx, wakeGrace, sweepBatch)
		if err != nil {
			return err
		}
		var jobs []RunRef
		for _, p := range parked {
			seq, err := store.RunWake(ctx, tx, p.ID, p.ResumeSeq, sourcesOf(vocab.RunQueued))
			if errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(p.ID), RunID: p.ID,
				Details: audit.RunRecovered{Cause: "wake_job_lost", Status: string(p.Status), FromSeq: p.ResumeSeq, Seq: seq}}); err != nil {
				return err
			}
			if err := notifyRun(ctx, tx, p.ID, vocab.RunQueued); err != nil {
				return err
			}
			jobs = append(jobs, RunRef{ID: p.ID, Seq: seq})
		}
		woken = len(jobs)
		return e.scheduler.EnqueueRuns(ctx, tx, jobs)
	})
	if err != nil {
		return 0, fmt.Errorf("wake lost sleepers: %w", err)
	}
	return woken, nil
}
