package workflow_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// batchState is what a batch decision may write: it must not move when the
// decision is refused.
type batchState struct {
	BatchDecisions, Decisions, Events, InBatch, Pending int
}

func stateOf(t *testing.T, b *batchBundle, batchID string) batchState {
	t.Helper()
	var s batchState
	require.NoError(t, b.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM batch_decisions),
		(SELECT count(*) FROM decisions),
		(SELECT count(*) FROM audit_events),
		(SELECT count(*) FROM approval_requests WHERE batch_id = $1 AND tier = 'batched'),
		(SELECT count(*) FROM approval_requests WHERE batch_id = $1 AND status = 'pending')`, batchID).
		Scan(&s.BatchDecisions, &s.Decisions, &s.Events, &s.InBatch, &s.Pending))
	return s
}

func TestBatchAuthorization(t *testing.T) {
	t.Parallel()
	b := startBatches(t)
	ctx := context.Background()
	var rs []*store.Request
	for i := range 3 {
		_, r := b.startTag(t, fmt.Sprint("v", i), tagIn{Kind: "ticket.tag", Team: "v"})
		rs = append(rs, r)
	}
	batchID := *rs[0].BatchID
	before := stateOf(t, b, batchID)
	require.Equal(t, batchState{0, 0, before.Events, 3, 3}, before)

	t.Run("ViewerIsRefusedBeforeAnyWrite", func(t *testing.T) {
		viewer := workflow.Actor{Name: "viewer@example.com", Roles: []vocab.Role{"viewer"}}
		for _, p := range []workflow.BatchDecideParams{
			// "Approve selected, leave the rest" would move two items out.
			{Action: workflow.ApproveSelected, Selected: []string{rs[0].ID}},
			{Action: workflow.ApproveRejectRest, Selected: []string{rs[0].ID}, Reason: "no"},
			{Action: workflow.RejectAll, Reason: "no"},
		} {
			p.BatchID, p.Actor, p.Items = batchID, viewer, shown(rs)
			_, err := b.Engine.DecideBatch(ctx, p)
			require.ErrorIs(t, err, workflow.ErrForbidden, p.Action)
			require.ErrorContains(t, err, "reviewer")
			require.Equal(t, before, stateOf(t, b, batchID), "%s: no batch decision, no decision, no event, nothing left out", p.Action)
		}
	})

	t.Run("MalformedIdsAreRefusedBeforeAnyWrite", func(t *testing.T) {
		for _, id := range []string{"nope", "urn:uuid:" + rs[1].ID, rs[1].ID + "'"} {
			items := shown(rs)
			items[1].ID = id
			_, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: batchID, Actor: boss,
				Action: workflow.ApproveSelected, Items: items, Selected: []string{rs[0].ID}})
			require.ErrorIs(t, err, workflow.ErrInvalidInput, id)
			require.Equal(t, before, stateOf(t, b, batchID))
		}
		_, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: "nope", Actor: boss,
			Action: workflow.RejectAll, Items: shown(rs), Reason: "no"})
		require.ErrorIs(t, err, workflow.ErrInvalidInput)
	})

	t.Run("LeavingOutNeedsARoleThatCouldDecideTheItem", func(t *testing.T) {
		// The third item needs an approver (as if its rule said so): a
		// reviewer may decide the batch, but may not send that item away.
		_, err := b.Pool.Exec(ctx, `UPDATE approval_requests SET roles = '{approver}' WHERE id = $1`, rs[2].ID)
		require.NoError(t, err)
		res, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: batchID, Actor: boss,
			Action: workflow.ApproveSelected, Items: shown(rs), Selected: []string{rs[0].ID}})
		require.NoError(t, err, "a reviewer is allowed")
		require.Equal(t, 1, res.Approved)
		require.Equal(t, 1, res.LeftOut)
		require.Len(t, res.Refused, 1)
		require.Equal(t, rs[2].ID, res.Refused[0].RequestID)
		require.Contains(t, res.Refused[0].Note, "approver")
		kept, err := store.RequestGet(ctx, b.Pool, rs[2].ID)
		require.NoError(t, err)
		require.Equal(t, batchID, *kept.BatchID, "still in the batch")
		require.Equal(t, vocab.TierBatched, kept.Tier)
		left, err := store.RequestGet(ctx, b.Pool, rs[1].ID)
		require.NoError(t, err)
		require.Nil(t, left.BatchID)
		require.Contains(t, left.Note, "Left out of a batch by boss@example.com")
		b.WaitRun(t, rs[0].RunID, vocab.RunCompleted)
	})
}

// A fault inside one item's decision (here its run is no longer waiting, so
// the run cannot be moved on after the request was decided) aborts the whole
// batch decision: no item may be committed half decided and counted as
// refused.
func TestBatchItemFaultAbortsTheBatch(t *testing.T) {
	t.Parallel()
	b := startBatches(t)
	ctx := context.Background()
	var rs []*store.Request
	for i := range 3 { // the third closes the batch
		_, r := b.startTag(t, fmt.Sprint("f", i), tagIn{Kind: "ticket.tag", Team: "f"})
		rs = append(rs, r)
	}
	batchID := *rs[0].BatchID
	_, err := b.Pool.Exec(ctx, `UPDATE workflow_runs SET status = 'running' WHERE id = $1`, rs[1].RunID)
	require.NoError(t, err)
	before := stateOf(t, b, batchID)
	_, err = b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: batchID, Actor: boss,
		Action: workflow.RejectAll, Items: shown(rs), Reason: "no"})
	require.ErrorIs(t, err, store.ErrNotFound, "the run could not be moved on")
	require.Equal(t, before, stateOf(t, b, batchID), "nothing of the batch decision was committed")
}
