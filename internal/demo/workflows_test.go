package demo_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

func TestEditedActionIsCheckedAgain(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{})
	ctx := context.Background()
	reviewer := workflow.Actor{Name: "rev@example.com", Roles: []vocab.Role{"reviewer"}}

	// refund starts a refund ticket for an order of 120 and edits the
	// proposed refund (120, which passes its checks) to amount.
	refund := func(t *testing.T, key string, amount float64) *store.Run {
		t.Helper()
		raw, _ := json.Marshal(demo.Ticket{ID: key, Customer: "ada@example.com", Subject: "Refund please", Body: "broken", OrderTotal: 120})
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "support_triage", BusinessKey: key, Input: raw, StartedBy: "agent"})
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, run.ID)
		var action workflow.Action
		require.NoError(t, json.Unmarshal(req.Action, &action))
		require.EqualValues(t, 120, action.Params["amount"])
		for _, c := range action.Checks {
			require.True(t, c.Passed, "the proposal passes %s", c.Name)
		}
		edited := map[string]any{}
		for k, v := range action.Params {
			edited[k] = v
		}
		edited["amount"] = amount
		_, err = b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer, Verdict: vocab.VerdictEdit,
			PayloadHash: req.PayloadHash, EditedParams: edited})
		require.NoError(t, err)
		// Decide left the run queued: the next wait is the one after the edit.
		return b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed, vocab.RunWaitingHuman)
	}
	outbox := func(t *testing.T, runID string) []json.RawMessage {
		t.Helper()
		rows, err := b.Pool.Query(ctx, `SELECT payload FROM demo_outbox WHERE run_id = $1`, runID)
		require.NoError(t, err)
		defer rows.Close()
		var out []json.RawMessage
		for rows.Next() {
			var p json.RawMessage
			require.NoError(t, rows.Scan(&p))
			out = append(out, p)
		}
		require.NoError(t, rows.Err())
		return out
	}

	t.Run("FailingEditIsReviewedAgain", func(t *testing.T) {
		run := refund(t, "T-over", 400)
		require.Equal(t, vocab.RunWaitingHuman, run.Status, "error: %v", run.ErrorMessage)
		require.Empty(t, outbox(t, run.ID), "nothing was applied")
		steps, err := store.StepList(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		names := make([]string, len(steps))
		for i, s := range steps {
			names[i] = s.Name
		}
		require.Equal(t, []string{"collect_context", "propose_change", "run_checks", "request_approval",
			"run_checks_on_edit", "request_approval"}, names)

		again := b.PendingRequest(t, run.ID)
		var action workflow.Action
		require.NoError(t, json.Unmarshal(again.Action, &action))
		require.EqualValues(t, 400, action.Params["amount"], "the edited action is what is asked about")
		require.Contains(t, action.Summary, "Edited by rev@example.com")
		var failed []string
		for _, c := range action.Checks {
			if !c.Passed {
				failed = append(failed, c.Name+": "+c.Detail)
			}
		}
		require.Equal(t, []string{"refund within order total: refund 400.00 of order 120.00"}, failed,
			"the reviewer sees the checks of the edited action")

		// Whoever approves it now has seen what fails.
		_, err = b.Engine.Decide(ctx, workflow.DecideParams{RequestID: again.ID, Actor: reviewer, Verdict: vocab.VerdictReject,
			Reason: "over the order total", PayloadHash: again.PayloadHash})
		require.NoError(t, err)
		done := b.WaitRun(t, run.ID, vocab.RunRejected)
		require.Empty(t, outbox(t, done.ID))
	})
	t.Run("PassingEditIsApplied", func(t *testing.T) {
		run := refund(t, "T-under", 60)
		require.Equal(t, vocab.RunCompleted, run.Status, "error: %v", run.ErrorMessage)
		payloads := outbox(t, run.ID)
		require.Len(t, payloads, 1)
		var applied map[string]any
		require.NoError(t, json.Unmarshal(payloads[0], &applied))
		require.EqualValues(t, 60, applied["amount"])
	})
}
