package web_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// TestRunShowsAttemptsAndCompensation: a run whose step failed twice and
// then rolled back its effect shows both, in the API's run steps (failed
// attempts with their errors and retry times, the compensation step, the
// cause) and on the run page (the attempts table, the rollback banner).
func TestRunShowsAttemptsAndCompensation(t *testing.T) {
	t.Parallel()
	c := startConsole(t, func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "rollback", func(ctx context.Context, _ struct{}) (int, error) {
			if _, err := workflow.Effect(ctx, "reserve", func(context.Context, workflow.EffectContext) (int, error) { return 1, nil }); err != nil {
				return 0, err
			}
			return workflow.Step(ctx, "flaky", func(context.Context) (int, error) {
				return 0, workflow.Error("busy", "the <b>service</b> is busy")
			}, workflow.WithRetry(workflow.RetryPolicy{MaxAttempts: 2, InitialInterval: 10 * time.Millisecond}))
		})
		workflow.Compensate(r, "rollback", "reserve", func(context.Context, workflow.EffectContext, int) error { return nil })
	})
	raw, _ := json.Marshal(struct{}{})
	run, _, err := c.Engine.Start(context.Background(), workflow.StartParams{Workflow: "rollback", BusinessKey: "rb", Input: raw, StartedBy: "admin@example.com"})
	require.NoError(t, err)
	done := c.WaitRun(t, run.ID, vocab.RunCompensated, vocab.RunCompensationFailed, vocab.RunFailed)
	require.Equal(t, vocab.RunCompensated, done.Status)

	t.Run("API", func(t *testing.T) {
		var got struct {
			Status            string `json:"status"`
			CompensationCause string `json:"compensation_cause"`
			Steps             []struct {
				Name           string `json:"name"`
				Kind           string `json:"kind"`
				FailedAttempts []struct {
					Attempt int        `json:"attempt"`
					Error   string     `json:"error"`
					RetryAt *time.Time `json:"retry_at"`
				} `json:"failed_attempts"`
			} `json:"steps"`
		}
		require.Equal(t, 200, c.api(t, "reviewer@example.com").do("GET", "/runs/"+run.ID, nil, &got))
		require.Equal(t, "compensated", got.Status)
		require.Equal(t, "failed", got.CompensationCause)
		require.Len(t, got.Steps, 3)
		require.Equal(t, "flaky", got.Steps[1].Name)
		require.Len(t, got.Steps[1].FailedAttempts, 2)
		require.Contains(t, got.Steps[1].FailedAttempts[0].Error, "busy")
		require.NotNil(t, got.Steps[1].FailedAttempts[0].RetryAt)
		require.Nil(t, got.Steps[1].FailedAttempts[1].RetryAt, "the last attempt was not retried")
		require.Equal(t, "compensation", got.Steps[2].Kind)
		require.Equal(t, "undo:reserve", got.Steps[2].Name)
	})

	t.Run("Page", func(t *testing.T) {
		doc, code := c.get(t, c.client(t, "admin@example.com"), "/runs/"+run.ID)
		require.Equal(t, 200, code)
		require.Contains(t, doc.Find(`[data-testid=run-compensation]`).Text(), "Rolled back after the run failed")
		require.Equal(t, 2, doc.Find(`[data-testid=run-attempts] [data-testid=attempt]`).Length())
		require.Contains(t, doc.Find(`[data-testid=run-attempts]`).Text(), "the <b>service</b> is busy", "model and step text is escaped")
		require.Zero(t, doc.Find(`[data-testid=cancel-run]`).Length())
	})
}
