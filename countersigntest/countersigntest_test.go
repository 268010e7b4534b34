package countersigntest_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign"
	"github.com/countersign/countersign/countersigntest"
	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// demoRegistry is a public registry holding the demo workflows, as a
// team's own would hold theirs.
func demoRegistry(t *testing.T) *countersign.Registry {
	reg := countersign.NewRegistry()
	inner, ok := workflow.PublicRegistry(reg)
	require.True(t, ok)
	demo.Register(inner, ai.NewOffline())
	return reg
}

// exportRun writes a run's history as `countersign run export` does.
func exportRun(t *testing.T, b *testapp.Bundle, runID string) string {
	t.Helper()
	h, err := workflow.Export(context.Background(), b.Pool, runID)
	require.NoError(t, err)
	raw, err := json.Marshal(h)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), runID+".json")
	require.NoError(t, os.WriteFile(path, raw, 0o644))
	return path
}

// TestReplayRealRun exports a demo run made by a real process on
// PostgreSQL, replays it against the same code (deterministic), and against
// code whose steps come in another order (the divergence, named).
func TestReplayRealRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testapp.Start(t, testapp.Options{})
	raw, _ := json.Marshal(demo.Ticket{ID: "T-1", Customer: "ada@example.com", Subject: "Refund please", Body: "broken", OrderTotal: 120})
	run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "support_triage", BusinessKey: "T-1", Input: raw, StartedBy: "agent"})
	require.NoError(t, err)
	b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	waiting := exportRun(t, b, run.ID)
	req := b.PendingRequest(t, run.ID)
	_, err = b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash,
		Actor: workflow.Actor{Name: "rev@example.com", Roles: []vocab.Role{"reviewer"}}})
	require.NoError(t, err)
	done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
	require.Equal(t, vocab.RunCompleted, done.Status)
	completed := exportRun(t, b, run.ID)

	reg := demoRegistry(t)
	t.Run("Deterministic", func(t *testing.T) {
		res := countersigntest.ReplayFile(t, reg, completed)
		require.Equal(t, "deterministic: 6 steps", res.String())
		require.Equal(t, 1, res.Version)
	})
	t.Run("WaitingRunReplaysToItsGate", func(t *testing.T) {
		res := countersigntest.ReplayFile(t, reg, waiting)
		require.Equal(t, "deterministic: 3 steps", res.String())
	})
	t.Run("ChangedCodeDiverges", func(t *testing.T) {
		changed := countersign.NewRegistry()
		countersign.Register(changed, "support_triage", func(ctx context.Context, tk demo.Ticket) (string, error) {
			if _, err := countersign.Step(ctx, "collect_context", func(context.Context) (demo.Ticket, error) { return tk, nil }); err != nil {
				return "", err
			}
			// The checks now run before the model is asked.
			if _, err := countersign.Step(ctx, "run_checks", func(context.Context) (int, error) { return 0, nil }); err != nil {
				return "", err
			}
			return "", nil
		})
		res, err := countersigntest.Check(changed, completed)
		require.NoError(t, err)
		require.False(t, res.Deterministic())
		require.Equal(t, 2, res.Divergence.Step)
		require.Equal(t, `diverged at step 2: recorded model "propose_change", the code reached step "run_checks"`, res.String())
		require.Equal(t, 1, res.Steps, "steps matched before the divergence")
	})
	t.Run("CodeThatStopsEarlyDiverges", func(t *testing.T) {
		short := countersign.NewRegistry()
		countersign.Register(short, "support_triage", func(ctx context.Context, tk demo.Ticket) (string, error) {
			_, err := countersign.Step(ctx, "collect_context", func(context.Context) (demo.Ticket, error) { return tk, nil })
			return "", err
		})
		res, err := countersigntest.Check(short, completed)
		require.NoError(t, err)
		require.Equal(t, `diverged at step 2: recorded model "propose_change", the code reached the end`, res.String())
	})
	t.Run("UnregisteredVersion", func(t *testing.T) {
		v2 := countersign.NewRegistry()
		countersign.Register(v2, "support_triage", demo.SupportTriage, countersign.Options{Version: 2})
		_, err := countersigntest.Check(v2, completed)
		require.ErrorIs(t, err, workflow.ErrUnknownWorkflow)
	})
}

type refundIn struct {
	Order  string  `json:"order"`
	Amount float64 `json:"amount"`
}

// refunds registers a workflow with a model step, a gate and an effect.
func refunds(applied *[]string) *countersign.Registry {
	reg := countersign.NewRegistry()
	countersign.Register(reg, "refund", func(ctx context.Context, in refundIn) (string, error) {
		p, err := countersign.Generate[struct {
			Reason string `json:"reason"`
		}](ctx, "explain", countersign.ModelRequest{Task: "explain"})
		if err != nil {
			return "", err
		}
		d, err := countersign.RequestApproval(ctx, countersign.Action{Kind: "refund", Summary: "Refund " + in.Order + ": " + p.Reason,
			Params: map[string]any{"amount": in.Amount}})
		if err != nil {
			return "", err
		}
		return countersign.Effect(ctx, "pay", func(ctx context.Context, ec countersign.EffectContext) (string, error) {
			*applied = append(*applied, ec.Key)
			return "paid " + d.Actor, nil
		})
	})
	return reg
}

func TestScriptedRun(t *testing.T) {
	t.Parallel()
	script := countersigntest.Script{
		Model:     map[string]any{"explain": map[string]string{"reason": "broken on arrival"}},
		Decisions: []countersign.Decision{{Verdict: vocab.VerdictApprove, Actor: "rev@example.com"}},
	}
	t.Run("CompletesAndReplays", func(t *testing.T) {
		var applied []string
		reg := refunds(&applied)
		run := countersigntest.Run(t, reg, "refund", refundIn{Order: "A-1", Amount: 40}, script)
		require.NoError(t, run.Err)
		require.JSONEq(t, `"paid rev@example.com"`, string(run.Output))
		require.Len(t, applied, 1)
		require.Len(t, run.History.Steps, 3)
		require.Equal(t, vocab.RunCompleted, run.History.Run.Status)

		path := filepath.Join(t.TempDir(), "refund.json")
		require.NoError(t, run.Save(path))
		res := countersigntest.ReplayFile(t, reg, path)
		require.Equal(t, "deterministic: 3 steps", res.String())
		require.Len(t, applied, 1, "a replay runs no effect")
	})
	t.Run("Rejected", func(t *testing.T) {
		var applied []string
		rejected := script
		rejected.Decisions = []countersign.Decision{{Verdict: vocab.VerdictReject, Reason: "no"}}
		run := countersigntest.Run(t, refunds(&applied), "refund", refundIn{Order: "A-2", Amount: 40}, rejected)
		require.ErrorIs(t, run.Err, workflow.ErrRejected)
		require.Equal(t, vocab.RunRejected, run.History.Run.Status)
		require.Empty(t, applied)
	})
	t.Run("MissingAnswer", func(t *testing.T) {
		var applied []string
		run := countersigntest.Run(t, refunds(&applied), "refund", refundIn{Order: "A-3"}, countersigntest.Script{})
		var f *countersign.Failure
		require.True(t, errors.As(run.Err, &f), "%v", run.Err)
		require.Contains(t, run.Err.Error(), `no scripted answer for model step "explain"`)
	})
	t.Run("MissingDecision", func(t *testing.T) {
		var applied []string
		noDecision := script
		noDecision.Decisions = nil
		run := countersigntest.Run(t, refunds(&applied), "refund", refundIn{Order: "A-4"}, noDecision)
		require.ErrorContains(t, run.Err, "no scripted decision for step 2 (refund: Refund A-4: broken on arrival)")
	})
}

// TestPanicIsTheRunsError: an effect that writes through ec.Tx, which a run
// in memory does not have, fails that run rather than the test binary.
func TestPanicIsTheRunsError(t *testing.T) {
	t.Parallel()
	run := countersigntest.Run(t, demoRegistry(t), "support_triage", demo.Ticket{ID: "T-1", Customer: "ada@example.com", OrderTotal: 10},
		countersigntest.Script{
			Model:     map[string]any{"propose_change": map[string]any{"kind": "reply", "summary": "Reply", "params": map[string]any{}}},
			Decisions: []countersign.Decision{{Verdict: vocab.VerdictApprove}},
		})
	require.ErrorContains(t, run.Err, `workflow "support_triage" panicked`)
	require.Equal(t, vocab.RunFailed, run.History.Run.Status)
	require.Len(t, run.History.Steps, 4, "the steps before the effect are recorded")
}
