package workflow_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// TestDeadlineApproveIsFinalWithManyApprovals covers a batched request stored
// with approvals 2 and on_timeout approve (the policy loader now refuses that
// combination, but requests made under an older policy still carry it): the
// deadline's approval must decide the request, not wait for a second vote
// that no system actor will ever cast.
func TestDeadlineApproveIsFinalWithManyApprovals(t *testing.T) {
	t.Parallel()
	b := startBatches(t)
	ctx := context.Background()

	run, req := b.startTag(t, "two", tagIn{Kind: "ticket.tag", Team: "two"})
	// What an older policy with `approvals: 2` would have stored.
	_, err := b.Pool.Exec(ctx, `UPDATE approval_requests SET approvals_required = 2 WHERE id = $1`, req.ID)
	require.NoError(t, err)

	b.clock.Advance(61 * time.Minute)
	t.Cleanup(func() { b.clock.Advance(-61 * time.Minute) })
	_, err = b.Engine.Expire(ctx, req.ID)
	require.NoError(t, err)

	got, err := store.RequestGet(ctx, b.Pool, req.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestApproved, got.Status, "the deadline's approval is final, not one vote of two")
	b.WaitRun(t, run.ID, vocab.RunCompleted)
	d, err := store.DecisionGetByRequest(ctx, b.Pool, req.ID)
	require.NoError(t, err)
	require.Equal(t, "policy:tags", d.Actor)
	require.Equal(t, vocab.VerdictApprove, d.Verdict)
}
