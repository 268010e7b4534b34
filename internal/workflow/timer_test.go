package workflow_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

type sleepIn struct {
	MS int `json:"ms"`
}

// sleeper counts its steps around a durable timer of in.MS milliseconds.
func sleeper(before, after *atomic.Int32) func(*workflow.Registry, *ai.Offline) {
	return func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "sleeper", func(ctx context.Context, in sleepIn) (int, error) {
			n, err := workflow.Step(ctx, "before", func(context.Context) (int, error) { return int(before.Add(1)), nil })
			if err != nil {
				return 0, err
			}
			if err := workflow.Sleep(ctx, "nap", time.Duration(in.MS)*time.Millisecond); err != nil {
				return 0, err
			}
			return workflow.Step(ctx, "after", func(context.Context) (int, error) { return n + 10*int(after.Add(1)), nil })
		})
	}
}

// waitingStep returns the run's waiting step.
func waitingStep(t *testing.T, b *testapp.Bundle, runID string) *store.Step {
	t.Helper()
	steps, err := store.StepList(context.Background(), b.Pool, runID)
	require.NoError(t, err)
	for _, s := range steps {
		if s.Status == vocab.StepWaiting {
			return s
		}
	}
	t.Fatalf("run %s has no waiting step", runID)
	return nil
}

func runningJobs(t *testing.T, b *testapp.Bundle, runID string) int {
	t.Helper()
	var n int
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job
		WHERE args->>'run_id' = $1 AND state IN ('running', 'available')`, runID).Scan(&n))
	return n
}

// TestSleep: a sleeping run holds no job but its scheduled wake-up, shows its
// wake-up time, and resumes after it, replaying the steps before the sleep.
func TestSleep(t *testing.T) {
	t.Parallel()
	var before, after atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: sleeper(&before, &after)})
	ctx := context.Background()

	t.Run("SleepsThenResumes", func(t *testing.T) {
		began := time.Now()
		run := start(t, b, "sleeper", "s1", sleepIn{MS: 1500})
		parked := b.WaitRun(t, run.ID, vocab.RunSleeping)
		require.Equal(t, "nap", parked.CurrentStep)
		step := waitingStep(t, b, run.ID)
		require.Equal(t, vocab.StepKindSleep, step.Kind)
		require.NotNil(t, step.WakeAt)
		require.WithinDuration(t, began.Add(1500*time.Millisecond), *step.WakeAt, time.Second)
		require.Zero(t, runningJobs(t, b, run.ID), "asleep, the run holds no running job")
		require.Equal(t, 1, b.LiveJobs(t, run.ID), "only its scheduled wake-up")
		require.Equal(t, 1, auditCount(t, b, run.ID, "run.sleeping", ""))

		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
		require.GreaterOrEqual(t, time.Since(began), 1500*time.Millisecond, "not woken before its time")
		require.JSONEq(t, `11`, string(done.Output))
		require.EqualValues(t, 1, before.Load(), "the step before the sleep was replayed, not run again")
		require.Equal(t, 1, auditCount(t, b, run.ID, "run.woke", "timer"))
		steps, err := store.StepList(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Len(t, steps, 3)
		require.Equal(t, vocab.StepCompleted, steps[1].Status)
		require.NotNil(t, steps[1].WakeAt, "the wake-up time stays on the step")
	})

	t.Run("PastSleepReturnsAtOnce", func(t *testing.T) {
		run := start(t, b, "sleeper", "s0", sleepIn{MS: 0})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunCompleted, done.Status)
		require.Zero(t, auditCount(t, b, run.ID, "run.sleeping", ""))
	})

	t.Run("CancelWhileAsleep", func(t *testing.T) {
		run := start(t, b, "sleeper", "s2", sleepIn{MS: 1000})
		b.WaitRun(t, run.ID, vocab.RunSleeping)
		afterBefore := after.Load()
		require.NoError(t, b.Engine.Cancel(ctx, run.ID, "tester@example.com"))
		// Its wake job runs (River moves scheduled jobs every few seconds),
		// finds the run cancelled and does nothing.
		require.Eventually(t, func() bool { return b.LiveJobs(t, run.ID) == 0 }, 15*time.Second, 50*time.Millisecond)
		got, err := store.RunGet(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunCancelled, got.Status)
		require.Equal(t, afterBefore, after.Load(), "nothing after the sleep ran")
	})
}

// TestWakeJobTwiceAndLate: the wake job of a sleep, run late (held back
// past the wake-up time, as when no worker is up then) resumes the run; run
// again afterwards, and the job of an older resume sequence, do nothing.
func TestWakeJobTwiceAndLate(t *testing.T) {
	t.Parallel()
	var before, after atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: sleeper(&before, &after)})
	ctx := context.Background()
	run := start(t, b, "sleeper", "late", sleepIn{MS: 300})
	parked := b.WaitRun(t, run.ID, vocab.RunSleeping)
	_, err := b.Pool.Exec(ctx, `UPDATE river_job SET scheduled_at = now() + interval '1 hour'
		WHERE args->>'run_id' = $1 AND state = 'scheduled'`, run.ID)
	require.NoError(t, err)
	time.Sleep(800 * time.Millisecond)
	got, err := store.RunGet(ctx, b.Pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunSleeping, got.Status, "held back past its wake-up time")
	_, err = b.Pool.Exec(ctx, `UPDATE river_job SET scheduled_at = now() WHERE args->>'run_id' = $1 AND state = 'scheduled'`, run.ID)
	require.NoError(t, err)

	done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
	require.Equal(t, vocab.RunCompleted, done.Status)
	require.JSONEq(t, `11`, string(done.Output))

	for _, seq := range []int{parked.ResumeSeq, parked.ResumeSeq - 1, done.ResumeSeq} {
		require.NoError(t, b.Engine.Execute(ctx, workflow.Job{RunID: run.ID, Seq: seq, Attempt: 1, MaxAttempts: 5}, nil))
	}
	again, err := store.RunGet(ctx, b.Pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunCompleted, again.Status)
	require.Equal(t, done.UpdatedAt, again.UpdatedAt, "the repeated wake-ups changed nothing")
	require.EqualValues(t, 1, after.Load(), "the step after the sleep ran once")
	require.EqualValues(t, 1, before.Load())
}

// TestLostWakeJob: when River discards or loses a sleeper's wake job, the
// sweeper wakes the run once its wake-up time is past by the grace.
func TestLostWakeJob(t *testing.T) {
	t.Parallel()
	var before, after atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: sleeper(&before, &after),
		Recovery: app.Recovery{SweepEvery: 100 * time.Millisecond}})
	ctx := context.Background()
	run := start(t, b, "sleeper", "lost", sleepIn{MS: 60 * 60 * 1000})
	b.WaitRun(t, run.ID, vocab.RunSleeping)
	// The job is gone, and the wake-up time passed long ago.
	_, err := b.Pool.Exec(ctx, `DELETE FROM river_job WHERE args->>'run_id' = $1`, run.ID)
	require.NoError(t, err)
	_, err = b.Pool.Exec(ctx, `UPDATE workflow_steps SET wake_at = now() - interval '1 minute'
		WHERE run_id = $1 AND status = 'waiting'`, run.ID)
	require.NoError(t, err)

	done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
	require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
	require.Equal(t, 1, auditCount(t, b, run.ID, "run.recovered", "wake_job_lost"))
	require.EqualValues(t, 1, after.Load())
}
