package workflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// TestHandlesRejection: a workflow registered with HandlesRejection gets its
// rejections back from RequestApproval, decided one by one or in a batch,
// and goes on; any other workflow still ends rejected.
func TestHandlesRejection(t *testing.T) {
	t.Parallel()
	var applied, handled atomic.Int32
	c := &clock{}
	b := testapp.Start(t, testapp.Options{Now: c.Now, Register: func(r *workflow.Registry, m *ai.Offline) {
		tagger(&applied)(r, m)
		workflow.Register(r, "taker", func(ctx context.Context, in tagIn) (string, error) {
			d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: in.Kind, Summary: "Tag for " + in.Team,
				Params: map[string]any{"team": in.Team}})
			if err != nil {
				return "", err
			}
			return workflow.Step(ctx, "after", func(context.Context) (string, error) {
				handled.Add(1)
				return string(d.Verdict) + ": " + d.Reason, nil
			})
		}, workflow.Options{HandlesRejection: true})
	}})
	ctx := context.Background()
	_, err := policystore.Apply(ctx, b.Pool, []byte(batchPolicy), "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	start := func(wf, key string, in tagIn) (*store.Run, *store.Request) {
		raw, _ := json.Marshal(in)
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: wf, BusinessKey: key, Input: raw, StartedBy: "agent"})
		require.NoError(t, err)
		run = b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		return run, b.PendingRequest(t, run.ID)
	}

	t.Run("One", func(t *testing.T) {
		run, req := start("taker", "one", tagIn{Kind: "refund", Team: "a"})
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: boss, Verdict: vocab.VerdictReject,
			Reason: "no", PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		done := b.WaitRun(t, run.ID, vocab.RunCompleted)
		require.JSONEq(t, `"reject: no"`, string(done.Output))
	})

	t.Run("Batch", func(t *testing.T) {
		var runs []*store.Run
		var req *store.Request
		for i := range 3 {
			var run *store.Run
			run, req = start("taker", fmt.Sprint("batch-", i), tagIn{Kind: "ticket.tag", Team: "b"})
			runs = append(runs, run)
		}
		items, err := store.BatchItems(ctx, b.Pool, *req.BatchID)
		require.NoError(t, err)
		require.Len(t, items, 3)
		res, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: *req.BatchID, Actor: boss,
			Action: workflow.RejectAll, Reason: "not now", Items: shown(items)})
		require.NoError(t, err)
		require.Equal(t, 3, res.Rejected)
		for _, run := range runs {
			done := b.WaitRun(t, run.ID, vocab.RunCompleted)
			require.JSONEq(t, `"reject: not now"`, string(done.Output))
		}
	})

	t.Run("OthersStillEnd", func(t *testing.T) {
		run, req := start("tagger", "plain", tagIn{Kind: "refund", Team: "c"})
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: boss, Verdict: vocab.VerdictReject,
			Reason: "no", PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunRejected)
		require.Zero(t, applied.Load(), "a rejected run of an ordinary workflow applies nothing")
	})
	require.Equal(t, int32(4), handled.Load())
}
