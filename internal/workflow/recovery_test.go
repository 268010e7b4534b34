package workflow_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

func auditCount(t *testing.T, b *testapp.Bundle, runID, kind, cause string) int {
	t.Helper()
	var n int
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events
		WHERE run_id = $1 AND kind = $2 AND ($3 = '' OR details->>'cause' = $3)`, runID, kind, cause).Scan(&n))
	return n
}

// TestLapsedLease: an execution whose lease lapsed (its renewals stalled, as
// in a long pause) is handed on, and when it wakes up its step record is
// refused and it stops, so the step it was running is recorded once, by the
// execution that took over, and the rest of the run runs once.
func TestLapsedLease(t *testing.T) {
	t.Parallel()
	var firstCalls, secondCalls atomic.Int32
	release := make(chan struct{})
	zombieErr := make(chan error, 1)
	zombieDone := make(chan struct{})
	b := testapp.Start(t, testapp.Options{
		Recovery: app.Recovery{Lease: 800 * time.Millisecond, RenewEvery: time.Hour, SweepEvery: 100 * time.Millisecond},
		Register: func(r *workflow.Registry, _ *ai.Offline) {
			workflow.Register(r, "stalls", func(ctx context.Context, _ struct{}) (int, error) {
				mine := int32(0)
				v, err := workflow.Step(ctx, "first", func(context.Context) (int, error) {
					if mine = firstCalls.Add(1); mine == 1 {
						<-release // deaf to its context: a stalled process
					}
					return int(mine), nil
				})
				if mine == 1 {
					zombieErr <- err
					close(zombieDone)
				}
				if err != nil {
					return 0, err
				}
				return workflow.Step(ctx, "second", func(context.Context) (int, error) {
					n := secondCalls.Add(1)
					if n == 1 {
						// The execution that took over wakes the stale one
						// while it still runs the run, and waits for it.
						close(release)
						select {
						case <-zombieDone:
						case <-time.After(10 * time.Second):
						}
					}
					return v + int(n)*10, nil
				})
			})
		}})
	run := start(t, b, "stalls", "z", struct{}{})
	done := b.WaitRun(t, run.ID, vocab.RunCompleted)
	require.JSONEq(t, `12`, string(done.Output), "the execution that took over ran both steps")
	require.Equal(t, 1, auditCount(t, b, run.ID, "run.recovered", "lease_expired"))
	select {
	case err := <-zombieErr:
		require.ErrorIs(t, err, workflow.ErrCancelled, "the stale execution's record was refused")
	default:
		t.Fatal("the stalled execution never returned")
	}
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, int32(1), secondCalls.Load(), "the stale execution stopped at its refused record")
	steps, err := store.StepList(context.Background(), b.Pool, run.ID)
	require.NoError(t, err)
	require.Len(t, steps, 2)
	require.JSONEq(t, `2`, string(steps[0].Output))
	final, err := store.RunGet(context.Background(), b.Pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunCompleted, final.Status)
	require.Zero(t, final.Failures)
}

// TestDiscardedJob: River's rescuer discards a job whose worker died on its
// last attempt without calling the worker, so nothing in the engine ran; the
// sweeper ends the run as failed instead of leaving it running.
func TestDiscardedJob(t *testing.T) {
	t.Parallel()
	reg := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "idle", func(ctx context.Context, _ struct{}) (int, error) { return 1, nil })
	}
	starter := testapp.Start(t, testapp.Options{NoWorker: true, Register: reg})
	ctx := context.Background()
	run := start(t, starter, "idle", "d", struct{}{})
	// What a worker killed on its last attempt leaves once the rescuer ran.
	_, err := starter.Pool.Exec(ctx, `UPDATE river_job SET state = 'discarded', attempt = max_attempts,
		attempted_at = now() - interval '1 minute', finalized_at = now() WHERE args->>'run_id' = $1`, run.ID)
	require.NoError(t, err)
	_, err = starter.Pool.Exec(ctx, `UPDATE workflow_runs SET status = 'running', attempt = 1,
		lease_owner = gen_random_uuid(), lease_until = now() - interval '1 second' WHERE id = $1`, run.ID)
	require.NoError(t, err)

	b := testapp.StartOn(t, starter.Pool, starter.URL, testapp.Options{Register: reg,
		Recovery: app.Recovery{SweepEvery: 100 * time.Millisecond}})
	failed := b.WaitRun(t, run.ID, vocab.RunFailed)
	require.Equal(t, "attempts_exhausted", *failed.ErrorCode)
	require.NotNil(t, failed.FinishedAt)
	require.Equal(t, 1, auditCount(t, b, run.ID, "run.failed", "job_discarded"))
	require.Zero(t, b.LiveJobs(t, run.ID), "not retried forever")
}

// TestJobTimeout: River's job timeout, shorter than a step, ends the job's
// context; what the execution learnt is still recorded on a context of its
// own, so the run is retried or completed, never left running.
func TestJobTimeout(t *testing.T) {
	t.Parallel()
	var slowCalls, lateCalls, deafCalls atomic.Int32
	b := testapp.Start(t, testapp.Options{
		Recovery: app.Recovery{JobTimeout: 700 * time.Millisecond},
		Register: func(r *workflow.Registry, _ *ai.Offline) {
			workflow.Register(r, "slow_step", func(ctx context.Context, _ struct{}) (int, error) {
				return workflow.Step(ctx, "wait", func(ctx context.Context) (int, error) {
					if slowCalls.Add(1) == 1 {
						<-ctx.Done() // longer than the job may run
						return 0, ctx.Err()
					}
					return 7, nil
				})
			})
			workflow.Register(r, "deaf_step", func(ctx context.Context, _ struct{}) (int, error) {
				return workflow.Step(ctx, "deaf", func(context.Context) (int, error) {
					deafCalls.Add(1)
					time.Sleep(1200 * time.Millisecond) // finishes after the job timed out
					return 9, nil
				})
			})
			workflow.Register(r, "late_result", func(ctx context.Context, _ struct{}) (int, error) {
				v, err := workflow.Step(ctx, "quick", func(context.Context) (int, error) { return 5, nil })
				if err != nil {
					return 0, err
				}
				lateCalls.Add(1)
				time.Sleep(1200 * time.Millisecond) // the job times out before the result is recorded
				return v, nil
			})
		}})

	t.Run("StepOutlivesJob", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "slow_step", "slow", struct{}{})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted)
		require.Equal(t, 1, done.Failures, "the timed-out attempt was recorded as a failure")
		require.Equal(t, 1, auditCount(t, b, run.ID, "run.step_failed", ""))
		var code string
		require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT details->>'code' FROM audit_events
			WHERE run_id = $1 AND kind = 'run.step_failed'`, run.ID).Scan(&code))
		require.Equal(t, "timeout", code)
		steps, err := store.StepList(context.Background(), b.Pool, run.ID)
		require.NoError(t, err)
		require.Equal(t, 2, steps[0].Attempts, "the failed attempt's step record was written after the timeout")
	})

	t.Run("StepResultAfterTimeout", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "deaf_step", "deaf", struct{}{})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted)
		require.JSONEq(t, `9`, string(done.Output))
		require.Equal(t, int32(1), deafCalls.Load(), "the step's result was recorded, not computed again")
		require.Zero(t, done.Failures)
	})

	t.Run("ResultAfterTimeout", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "late_result", "late", struct{}{})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted)
		require.JSONEq(t, `5`, string(done.Output))
		require.Equal(t, int32(1), lateCalls.Load(), "completed on the first execution, not computed again")
		require.Zero(t, done.Failures)
	})
}

// TestRecoverSkips: a run waiting for a human holds no lease and is never
// swept; a retrying run whose River job waits for its retry is left alone.
func TestRecoverSkips(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	b := testapp.Start(t, testapp.Options{
		// A lease of a second, not less: between a failed attempt's record and
		// River marking its job retryable, the job still reads as running, and
		// on a loaded machine River's completer can take longer than a very
		// short lease, which would hand the run on without need.
		Recovery: app.Recovery{Lease: time.Second, SweepEvery: 50 * time.Millisecond},
		Register: func(r *workflow.Registry, _ *ai.Offline) {
			workflow.Register(r, "gate", func(ctx context.Context, _ struct{}) (int, error) {
				_, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "payment.send", Summary: "pay", Risk: "high"})
				return 1, err
			})
			workflow.Register(r, "flaky", func(ctx context.Context, _ struct{}) (int, error) {
				return workflow.Step(ctx, "once", func(context.Context) (int, error) {
					if calls.Add(1) == 1 {
						return 0, errors.New("downstream unavailable")
					}
					return 2, nil
				})
			})
		}})
	waiting := start(t, b, "gate", "w", struct{}{})
	flaky := start(t, b, "flaky", "f", struct{}{})
	b.WaitRun(t, waiting.ID, vocab.RunWaitingHuman)
	done := b.WaitRun(t, flaky.ID, vocab.RunCompleted)
	require.Equal(t, 1, done.Failures)
	time.Sleep(2500 * time.Millisecond) // several leases and sweeps
	still, err := store.RunGet(context.Background(), b.Pool, waiting.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunWaitingHuman, still.Status)
	require.Zero(t, still.Recoveries)
	require.Zero(t, auditCount(t, b, waiting.ID, "run.recovered", ""))
	require.Zero(t, auditCount(t, b, flaky.ID, "run.recovered", ""), "its retry was scheduled, not lost")
	require.Equal(t, int32(2), calls.Load())
}

// TestLostBeforeClaim: a worker fetched the run's job and died before it
// claimed the run, so the run is still queued, holds no lease, and its job
// stays running in River; it is handed on once the fetch is a lease old.
func TestLostBeforeClaim(t *testing.T) {
	t.Parallel()
	reg := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "idle", func(ctx context.Context, _ struct{}) (int, error) {
			return workflow.Step(ctx, "one", func(context.Context) (int, error) { return 1, nil })
		})
	}
	starter := testapp.Start(t, testapp.Options{NoWorker: true, Register: reg})
	run := start(t, starter, "idle", "q", struct{}{})
	_, err := starter.Pool.Exec(context.Background(), `UPDATE river_job SET state = 'running', attempt = 1,
		attempted_at = now() - interval '1 minute', attempted_by = '{dead-worker}' WHERE args->>'run_id' = $1`, run.ID)
	require.NoError(t, err)

	b := testapp.StartOn(t, starter.Pool, starter.URL, testapp.Options{Register: reg,
		Recovery: app.Recovery{Lease: 500 * time.Millisecond, SweepEvery: 100 * time.Millisecond}})
	done := b.WaitRun(t, run.ID, vocab.RunCompleted)
	require.Equal(t, 1, done.Recoveries)
	require.Equal(t, 1, done.ResumeSeq)
	require.Equal(t, 1, auditCount(t, b, run.ID, "run.recovered", "worker_lost_before_claim"))
}

// TestConcurrentSweeps: sweepers in several processes at once (two River
// leaders during a leader change, or simply every worker) hand each orphaned
// run on exactly once.
func TestConcurrentSweeps(t *testing.T) {
	t.Parallel()
	reg := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "idle", func(ctx context.Context, _ struct{}) (int, error) { return 1, nil })
	}
	a := testapp.Start(t, testapp.Options{NoWorker: true, Register: reg})
	b := testapp.StartOn(t, a.Pool, a.URL, testapp.Options{NoWorker: true, Register: reg})
	ctx := context.Background()
	const runs = 300
	for i := range runs {
		start(t, a, "idle", "s"+strconv.Itoa(i), struct{}{})
	}
	// Every run was claimed by a worker that has since died with its jobs.
	_, err := a.Pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now() - interval '1 minute'`)
	require.NoError(t, err)
	_, err = a.Pool.Exec(ctx, `UPDATE workflow_runs SET status = 'running', lease_owner = gen_random_uuid(),
		lease_until = now() - interval '1 second'`)
	require.NoError(t, err)

	var wg sync.WaitGroup
	var handedOn atomic.Int64
	for _, e := range []*workflow.Engine{a.Engine, b.Engine, a.Engine, b.Engine} {
		wg.Go(func() {
			r, err := e.Recover(ctx)
			assert.NoError(t, err)
			handedOn.Add(int64(r.HandedOn))
		})
	}
	wg.Wait()
	require.Equal(t, int64(runs), handedOn.Load())
	var seqs, recovered, jobs int
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM workflow_runs WHERE resume_seq = 1 AND recoveries = 1`).Scan(&seqs))
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE kind = 'run.recovered'`).Scan(&recovered))
	require.NoError(t, a.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'available' AND (args->>'seq')::int = 1`).Scan(&jobs))
	require.Equal(t, runs, seqs)
	require.Equal(t, runs, recovered)
	require.Equal(t, runs, jobs)
	again, err := a.Engine.Recover(ctx)
	require.NoError(t, err)
	require.Zero(t, again.HandedOn, "a handed-on run with a queued job is left alone")
}

// TestQueuedJobGone: a run queued for a job that never executes (River
// cancelled or discarded it before any worker claimed the run, or the job row
// is gone) holds no lease time; once it has not been touched for a lease the
// sweeper fails it or hands it on, instead of leaving it queued forever. A run
// waiting for a human, with no job and no lease either, is never touched.
func TestQueuedJobGone(t *testing.T) {
	t.Parallel()
	reg := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "idle", func(ctx context.Context, _ struct{}) (int, error) { return 1, nil })
	}
	starter := testapp.Start(t, testapp.Options{NoWorker: true, Register: reg})
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		_, err := starter.Pool.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	cancelled := start(t, starter, "idle", "c", struct{}{})
	exec(`UPDATE river_job SET state = 'cancelled', finalized_at = now() WHERE args->>'run_id' = $1`, cancelled.ID)
	discarded := start(t, starter, "idle", "d", struct{}{})
	exec(`UPDATE river_job SET state = 'discarded', attempt = max_attempts, finalized_at = now() WHERE args->>'run_id' = $1`, discarded.ID)
	deleted := start(t, starter, "idle", "x", struct{}{})
	exec(`DELETE FROM river_job WHERE args->>'run_id' = $1`, deleted.ID)
	waiting := start(t, starter, "idle", "w", struct{}{})
	exec(`DELETE FROM river_job WHERE args->>'run_id' = $1`, waiting.ID)
	exec(`UPDATE workflow_runs SET status = 'waiting_human' WHERE id = $1`, waiting.ID)
	exec(`UPDATE workflow_runs SET updated_at = now() - interval '1 minute'`)
	var unset int
	require.NoError(t, starter.Pool.QueryRow(ctx, `SELECT count(*) FROM workflow_runs WHERE lease_until IS NULL`).Scan(&unset))
	require.Equal(t, 4, unset, "queued runs hold no lease time")

	b := testapp.StartOn(t, starter.Pool, starter.URL, testapp.Options{Register: reg,
		Recovery: app.Recovery{Lease: 500 * time.Millisecond, SweepEvery: 100 * time.Millisecond}})
	t.Run("Cancelled", func(t *testing.T) {
		failed := b.WaitRun(t, cancelled.ID, vocab.RunFailed)
		require.Equal(t, "job_cancelled", *failed.ErrorCode)
		require.Equal(t, 1, auditCount(t, b, cancelled.ID, "run.failed", "job_cancelled"))
	})
	t.Run("Discarded", func(t *testing.T) {
		failed := b.WaitRun(t, discarded.ID, vocab.RunFailed)
		require.Equal(t, "attempts_exhausted", *failed.ErrorCode)
	})
	t.Run("Deleted", func(t *testing.T) {
		done := b.WaitRun(t, deleted.ID, vocab.RunCompleted)
		require.Equal(t, 1, done.Recoveries)
		require.Equal(t, 1, auditCount(t, b, deleted.ID, "run.recovered", "job_missing"))
	})
	t.Run("WaitingHuman", func(t *testing.T) {
		time.Sleep(time.Second) // several leases and sweeps
		still, err := store.RunGet(ctx, b.Pool, waiting.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunWaitingHuman, still.Status)
		require.Zero(t, still.Recoveries)
		require.Zero(t, auditCount(t, b, waiting.ID, "run.recovered", ""))
	})
}
