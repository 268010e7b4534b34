package policystore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// TestGrantExpiresWithoutARestart: a live grant decides the refunds it
// covers, and once its expiry passes the broad rule decides them again, with
// the policy still cached (the poll is 30 s) and nothing invalidated.
func TestGrantExpiresWithoutARestart(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{Register: refunds})
	ctx := context.Background()
	v, err := policystore.Apply(ctx, b.Pool, policy.Example, "admin@example.com")
	require.NoError(t, err)
	expires := time.Now().Add(8 * time.Second)
	g, err := store.GrantInsert(ctx, b.Pool, &store.Grant{Rule: "refund", ActionKind: "payment.refund", Tier: vocab.TierBatched,
		Condition: `action.kind == "payment.refund" && "amount" in action.params && type(action.params["amount"]) == double && action.params["amount"] <= 100.0`,
		Ranges:    []store.ParamRange{{Param: "amount", Min: 0, Max: 100}}, PolicyVersion: v.Version, Decided: 60, Approved: 60,
		WindowStart: time.Now().Add(-time.Hour), CreatedBy: "admin@example.com", ExpiresAt: expires})
	require.NoError(t, err)
	b.App.Policies.Invalidate()

	refund := func(key string, amount string) *store.Request {
		t.Helper()
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "refunds", BusinessKey: key, Input: []byte(amount), StartedBy: "test"})
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		return b.PendingRequest(t, run.ID)
	}
	req := refund("before", "40")
	require.True(t, time.Now().Before(expires), "the machine is too slow for this test's 8 s")
	require.Equal(t, policystore.GrantRuleName(g.ID), req.Rule)
	require.Equal(t, vocab.TierBatched, req.Tier)
	require.Equal(t, "refund", refund("outside", "400").Rule, "outside its range the grant does not apply")

	time.Sleep(time.Until(expires) + 100*time.Millisecond)
	req = refund("after", "40")
	require.Equal(t, "refund", req.Rule, "an expired grant no longer applies")
	require.Equal(t, vocab.TierExplicit, req.Tier)
	live, err := store.GrantListLive(ctx, b.Pool)
	require.NoError(t, err)
	require.Empty(t, live)
}
