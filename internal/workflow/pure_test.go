package workflow_test

import (
	"context"
	"encoding/json"
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

// TestPureStepsHeld: the records of pure steps wait in memory for the next
// durable write and commit with it; each keeps the time it ended.
func TestPureStepsHeld(t *testing.T) {
	t.Parallel()
	inModel := make(chan struct{})
	release := make(chan struct{})
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, m *ai.Offline) {
		m.Handle("held", func(json.RawMessage) (any, error) {
			inModel <- struct{}{}
			<-release
			return map[string]int{"n": 3}, nil
		})
		workflow.Register(r, "held", func(ctx context.Context, _ struct{}) (int, error) {
			a, err := workflow.Step(ctx, "a", func(context.Context) (int, error) { return 1, nil })
			if err != nil {
				return 0, err
			}
			bb, err := workflow.Step(ctx, "b", func(context.Context) (int, error) { return 2, nil })
			if err != nil {
				return 0, err
			}
			g, err := workflow.Generate[map[string]int](ctx, "ask", ai.Request{Task: "held"})
			if err != nil {
				return 0, err
			}
			return workflow.Step(ctx, "sum", func(context.Context) (int, error) { return a + bb + g["n"], nil })
		})
	}})
	run := start(t, b, "held", "h", struct{}{})
	select {
	case <-inModel:
	case <-time.After(30 * time.Second):
		t.Fatal("the run never reached its model call")
	}
	steps, err := store.StepList(context.Background(), b.Pool, run.ID)
	require.NoError(t, err)
	require.Empty(t, steps, "the pure steps before the model call are held in memory")
	close(release)

	done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
	require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
	require.JSONEq(t, `6`, string(done.Output))
	require.Equal(t, 4, done.StepsUsed)
	require.Equal(t, "sum", done.CurrentStep)
	steps, err = store.StepList(context.Background(), b.Pool, run.ID)
	require.NoError(t, err)
	require.Len(t, steps, 4, "held with the model call and with the completion")
	for i, name := range []string{"a", "b", "ask", "sum"} {
		require.Equal(t, name, steps[i].Name)
		require.Equal(t, vocab.StepCompleted, steps[i].Status)
	}
	require.True(t, steps[1].FinishedAt.Before(steps[2].StartedAt) || steps[1].FinishedAt.Equal(steps[2].StartedAt),
		"a held step keeps the time it ended, not the time it was written")
}

// TestCrashRepeatsOnlyPureSteps: an execution that dies after a pure step
// loses only that step's record: the execution that takes over replays the
// model call from the history and runs the pure step again, and the effect
// after it happens once.
func TestCrashRepeatsOnlyPureSteps(t *testing.T) {
	t.Parallel()
	var modelCalls, pureCalls, stallCalls, effects atomic.Int32
	release := make(chan struct{})
	zombieDone := make(chan error, 1)
	b := testapp.Start(t, testapp.Options{
		Recovery: app.Recovery{Lease: 800 * time.Millisecond, RenewEvery: time.Hour, SweepEvery: 100 * time.Millisecond},
		Register: func(r *workflow.Registry, m *ai.Offline) {
			m.Handle("plan", func(json.RawMessage) (any, error) {
				modelCalls.Add(1)
				return map[string]int{"n": 1}, nil
			})
			workflow.Register(r, "dies_after_pure", func(ctx context.Context, _ struct{}) (int, error) {
				if _, err := workflow.Generate[map[string]int](ctx, "plan", ai.Request{Task: "plan"}); err != nil {
					return 0, err
				}
				if _, err := workflow.Step(ctx, "pure", func(context.Context) (int32, error) { return pureCalls.Add(1), nil }); err != nil {
					return 0, err
				}
				mine := int32(0)
				_, err := workflow.Step(ctx, "stall", func(context.Context) (int, error) {
					if mine = stallCalls.Add(1); mine == 1 {
						<-release // deaf to its context: a process that stopped
					} else {
						// The execution that took over lets the stale one go
						// and waits for it to give up.
						close(release)
						select {
						case <-zombieDone:
						case <-time.After(10 * time.Second):
						}
					}
					return 1, nil
				})
				if mine == 1 {
					zombieDone <- err
					return 0, err
				}
				if err != nil {
					return 0, err
				}
				return workflow.Effect(ctx, "apply", func(context.Context, workflow.EffectContext) (int, error) {
					return int(effects.Add(1)), nil
				})
			})
		}})
	run := start(t, b, "dies_after_pure", "d", struct{}{})
	done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
	require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
	require.Equal(t, int32(1), modelCalls.Load(), "the recorded model call was replayed, not made again")
	require.Equal(t, int32(2), pureCalls.Load(), "the pure step held by the lost execution ran again")
	require.Equal(t, int32(1), effects.Load(), "the effect happened once")
	require.Equal(t, 1, auditCount(t, b, run.ID, "run.recovered", "lease_expired"))
	steps, err := store.StepList(context.Background(), b.Pool, run.ID)
	require.NoError(t, err)
	require.Len(t, steps, 4)
	require.JSONEq(t, `2`, string(steps[1].Output), "the pure step's record is the second execution's")
}

// TestFinishedRunsJobAgain: a run's job that runs again after the run
// completed (River lost the completion in a crash: it completes the job
// only after the run's commit) claims nothing and changes nothing.
func TestFinishedRunsJobAgain(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "once", func(ctx context.Context, _ struct{}) (int32, error) {
			return workflow.Step(ctx, "count", func(context.Context) (int32, error) { return calls.Add(1), nil })
		})
	}})
	ctx := context.Background()
	run := start(t, b, "once", "o", struct{}{})
	done := b.WaitRun(t, run.ID, vocab.RunCompleted)
	require.Eventually(t, func() bool { return b.LiveJobs(t, run.ID) == 0 }, 10*time.Second, 20*time.Millisecond,
		"River completes the job after the run's commit")
	var before int
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE run_id = $1`, run.ID).Scan(&before))

	// The job runs again, as it would if the completion had been lost.
	_, err := b.Pool.Exec(ctx, `UPDATE river_job SET state = 'available', scheduled_at = now(), finalized_at = NULL
		WHERE args->>'run_id' = $1`, run.ID)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.LiveJobs(t, run.ID) == 0 }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, b.Engine.Execute(ctx, workflow.Job{RunID: run.ID, Seq: 0, Attempt: 2, MaxAttempts: 5}, nil))

	again, err := store.RunGet(ctx, b.Pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, done, again, "the run is untouched")
	require.Equal(t, int32(1), calls.Load())
	var after int
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE run_id = $1`, run.ID).Scan(&after))
	require.Equal(t, before, after, "no event")
}
