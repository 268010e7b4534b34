package workflow_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

func TestOutputLimit(t *testing.T) {
	t.Parallel()
	var afterBig atomic.Int32
	small := workflow.Options{MaxStepOutput: 4096}
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, m *ai.Offline) {
		// Over the engine's default of 256 KiB: the 200k-character field of
		// the report, and some.
		workflow.Register(r, "big_step", func(ctx context.Context, _ struct{}) (int, error) {
			if _, err := workflow.Step(ctx, "fetch", func(context.Context) (string, error) {
				return strings.Repeat("x", 300<<10), nil
			}); err != nil {
				return 0, err
			}
			afterBig.Add(1)
			return 1, nil
		})
		workflow.Register(r, "fits", func(ctx context.Context, _ struct{}) (string, error) {
			return workflow.Step(ctx, "fetch", func(context.Context) (string, error) { return strings.Repeat("x", 4000), nil })
		}, small)
		m.Handle("verbose", func(json.RawMessage) (any, error) {
			return map[string]string{"risk": strings.Repeat("high ", 2000)}, nil
		})
		workflow.Register(r, "big_model", func(ctx context.Context, _ struct{}) (string, error) {
			// T drops the field: the answer's own size is what counts.
			_, err := workflow.Generate[struct{}](ctx, "propose", ai.Request{Task: "verbose"})
			return "", err
		}, small)
		workflow.Register(r, "big_effect", func(ctx context.Context, _ struct{}) (string, error) {
			return workflow.Effect(ctx, "apply", func(ctx context.Context, ec workflow.EffectContext) (string, error) {
				_, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), "big", map[string]any{})
				return strings.Repeat("y", 5000), err
			})
		}, small)
		workflow.Register(r, "big_action", func(ctx context.Context, _ struct{}) (string, error) {
			d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "payment.refund", Summary: "Refund",
				Rationale: strings.Repeat("because ", 1000), Params: map[string]any{"amount": 1.0}})
			return string(d.Verdict), err
		}, small)
	}})
	ctx := context.Background()

	failed := func(t *testing.T, wf string) (*store.Run, []*store.Step) {
		t.Helper()
		run := b.WaitRun(t, start(t, b, wf, wf, struct{}{}).ID, vocab.RunFailed, vocab.RunCompleted, vocab.RunWaitingHuman)
		require.Equal(t, vocab.RunFailed, run.Status)
		require.Equal(t, workflow.CodeOutputTooLarge, *run.ErrorCode)
		require.Equal(t, 1, run.Attempt, "a permanent failure, not retried")
		steps, err := store.StepList(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.NotEmpty(t, steps)
		last := steps[len(steps)-1]
		require.Equal(t, vocab.StepFailed, last.Status, "the timeline shows the step that failed")
		require.Empty(t, last.Output, "nothing of the oversized output was stored")
		require.Contains(t, *last.Error, workflow.CodeOutputTooLarge)
		return run, steps
	}

	t.Run("StepOverTheDefault", func(t *testing.T) {
		run, _ := failed(t, "big_step")
		require.Contains(t, *run.ErrorMessage, `the result of step "fetch" is 307202 bytes of JSON, over the limit of 262144 bytes`)
		require.Zero(t, afterBig.Load(), "the workflow did not go on")
	})
	t.Run("StepWithinTheLimit", func(t *testing.T) {
		run := b.WaitRun(t, start(t, b, "fits", "fits", struct{}{}).ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunCompleted, run.Status)
	})
	t.Run("ModelAnswer", func(t *testing.T) {
		run, steps := failed(t, "big_model")
		require.Contains(t, *run.ErrorMessage, `the model's answer of step "propose" is 10011 bytes of JSON, over the limit of 4096 bytes`)
		require.Positive(t, steps[0].Tokens, "the tokens of the refused answer still count")
		require.Positive(t, run.TokensUsed)
	})
	t.Run("EffectResult", func(t *testing.T) {
		run, _ := failed(t, "big_effect")
		require.Contains(t, *run.ErrorMessage, `the result of step "apply" is 5002 bytes of JSON, over the limit of 4096 bytes`)
		var n int
		require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM demo_outbox WHERE run_id = $1`, run.ID).Scan(&n))
		require.Zero(t, n, "the effect's own writes rolled back with its record")
		require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM side_effects WHERE run_id = $1`, run.ID).Scan(&n))
		require.Zero(t, n, "nor is the effect marked done")
	})
	t.Run("ProposedAction", func(t *testing.T) {
		run, _ := failed(t, "big_action")
		require.Contains(t, *run.ErrorMessage, `the proposed action of step "request_approval" is`)
		require.Contains(t, *run.ErrorMessage, "over the limit of 4096 bytes")
		reqs, err := store.RequestListByRun(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Empty(t, reqs, "no reviewer is asked about it")
	})
}

// A result PostgreSQL refuses to store (a lone surrogate is valid JSON that
// jsonb rejects) would be refused on every retry: the run fails at once.
func TestUnstorableResult(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{Register: func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "surrogate", func(ctx context.Context, _ struct{}) (json.RawMessage, error) {
			return workflow.Step(ctx, "fetch", func(context.Context) (json.RawMessage, error) {
				return json.RawMessage(`"\ud800"`), nil
			})
		})
	}})
	run := b.WaitRun(t, start(t, b, "surrogate", "s", struct{}{}).ID, vocab.RunFailed, vocab.RunCompleted)
	require.Equal(t, vocab.RunFailed, run.Status)
	require.Equal(t, 1, run.Attempt, "a permanent failure, not retried")
	require.Contains(t, *run.ErrorMessage, `step "fetch": the result cannot be stored`)
}
