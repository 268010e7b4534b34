package workflow_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// TestRetryPolicies: a failing step is retried as its own policy or the
// workflow's default says, waiting the backoff with no worker held (the run
// is retrying, its next job scheduled in River, none running), each failed
// attempt recorded with its error; a code the policy never retries fails at
// once.
func TestRetryPolicies(t *testing.T) {
	t.Parallel()
	var flaky, declined, rateLimited, plain, own atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "flaky", func(ctx context.Context, _ struct{}) (int, error) {
			return workflow.Step(ctx, "call", func(context.Context) (int, error) {
				if n := flaky.Add(1); n <= 2 {
					return 0, errors.New("downstream unavailable")
				}
				return 7, nil
			}, workflow.WithRetry(workflow.RetryPolicy{MaxAttempts: 3, InitialInterval: 300 * time.Millisecond, BackoffFactor: 2}))
		})
		workflow.Register(r, "declined", func(ctx context.Context, _ struct{}) (int, error) {
			return workflow.Step(ctx, "charge", func(context.Context) (int, error) {
				declined.Add(1)
				return 0, workflow.Error("card_declined", "the card was declined")
			}, workflow.WithRetry(workflow.RetryPolicy{MaxAttempts: 5, InitialInterval: 10 * time.Millisecond,
				NonRetryable: []string{"card_declined"}}))
		})
		workflow.Register(r, "ratelimited", func(ctx context.Context, _ struct{}) (int, error) {
			return workflow.Step(ctx, "charge", func(context.Context) (int, error) {
				if rateLimited.Add(1) == 1 {
					return 0, workflow.Error("rate_limited", "slow down")
				}
				return 1, nil
			}, workflow.WithRetry(workflow.RetryPolicy{InitialInterval: 10 * time.Millisecond, NonRetryable: []string{"card_declined"}}))
		})
		workflow.Register(r, "defaults", func(ctx context.Context, _ struct{}) (int, error) {
			if _, err := workflow.Step(ctx, "own", func(context.Context) (int, error) {
				if own.Add(1) <= 2 {
					return 0, errors.New("not yet")
				}
				return 1, nil
			}, workflow.WithRetry(workflow.RetryPolicy{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond})); err != nil {
				return 0, err
			}
			return workflow.Step(ctx, "plain", func(context.Context) (int, error) {
				plain.Add(1)
				return 0, errors.New("always down")
			})
		}, workflow.Options{Retry: workflow.RetryPolicy{MaxAttempts: 2, InitialInterval: 10 * time.Millisecond}})
	}})
	ctx := context.Background()

	t.Run("BackoffRecordedNoWorkerHeld", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "flaky", "f1", struct{}{})
		// Between attempts: retrying, no lease, its next job waiting in River
		// (scheduled or available), none running.
		waiting := b.WaitRun(t, run.ID, vocab.RunRetrying)
		require.Nil(t, waiting.LeaseOwner)
		var scheduled, running int
		require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state IN ('scheduled', 'available')),
			count(*) FILTER (WHERE state = 'running') FROM river_job WHERE args->>'run_id' = $1`, run.ID).Scan(&scheduled, &running))
		require.Equal(t, 1, scheduled, "the retry is a job of its own, waiting")
		require.Zero(t, running, "no worker waits for the backoff")

		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
		require.EqualValues(t, 3, flaky.Load())
		steps, err := store.StepList(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Equal(t, 3, steps[0].Attempts)
		attempts, err := store.StepAttemptList(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Len(t, attempts, 2, "two failed attempts, each recorded")
		for i, a := range attempts {
			require.Equal(t, i+1, a.Attempt)
			require.Contains(t, a.Error, "downstream unavailable")
			require.NotNil(t, a.RetryAt)
			// 300 ms after the first failure, 600 ms after the second.
			require.GreaterOrEqual(t, a.RetryAt.Sub(a.FinishedAt), time.Duration(i+1)*300*time.Millisecond-50*time.Millisecond)
		}
		require.GreaterOrEqual(t, auditCount(t, b, run.ID, "run.step_failed", ""), 2)
	})

	t.Run("NonRetryableCodeFailsAtOnce", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "declined", "d1", struct{}{})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunFailed, done.Status)
		require.Equal(t, "card_declined", *done.ErrorCode)
		require.EqualValues(t, 1, declined.Load())
	})

	t.Run("OtherCodesAreRetried", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "ratelimited", "r1", struct{}{})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
		require.EqualValues(t, 2, rateLimited.Load())
	})

	t.Run("DefaultsVersusPerStep", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "defaults", "p1", struct{}{})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunFailed, done.Status)
		require.Equal(t, workflow.CodeAttemptsExhausted, *done.ErrorCode)
		require.EqualValues(t, 3, own.Load(), "the step's own policy: three attempts")
		require.EqualValues(t, 2, plain.Load(), "the workflow's default: two attempts")
		attempts, err := store.StepAttemptList(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Len(t, attempts, 4)
		require.Nil(t, attempts[3].RetryAt, "the last attempt is not retried")
	})
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := workflow.RetryPolicy{InitialInterval: time.Second, BackoffFactor: 3, MaxInterval: 5 * time.Second}
	require.Equal(t, time.Second, p.Backoff(1))
	require.Equal(t, 3*time.Second, p.Backoff(2))
	require.Equal(t, 5*time.Second, p.Backoff(3), "capped")
	require.Equal(t, 5*time.Second, p.Backoff(1000), "no overflow")
	require.Equal(t, workflow.DefaultInitialInterval, workflow.RetryPolicy{}.Backoff(1))
	require.Equal(t, "card_declined", workflow.ErrorCode(workflow.Error("card_declined", "x")))
	require.Equal(t, workflow.CodeStepError, workflow.ErrorCode(errors.New("x")))
}
