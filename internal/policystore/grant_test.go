package policystore_test

import (
	"context"
	"strings"
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

// TestGrantEndsWhenItsRuleChanges: a grant narrows the rule its evidence was
// gathered under. A new version that leaves that rule as it was keeps the
// grant; one that tightens it (two approvals instead of one, same name, same
// tier) ends it in the policy every caller evaluates.
func TestGrantEndsWhenItsRuleChanges(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{NoWorker: true})
	ctx := context.Background()
	v, err := policystore.Apply(ctx, b.Pool, policy.Example, "admin@example.com")
	require.NoError(t, err)
	g, err := store.GrantInsert(ctx, b.Pool, &store.Grant{Rule: "refund", ActionKind: "payment.refund", Tier: vocab.TierAuto,
		Condition: `action.kind == "payment.refund"`, PolicyVersion: v.Version, Decided: 60, Approved: 60,
		WindowStart: time.Now().Add(-time.Hour), CreatedBy: "admin@example.com", ExpiresAt: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	decide := func() policy.Decision {
		t.Helper()
		b.App.Policies.Invalidate()
		p, err := b.App.Policies.Active(ctx)
		require.NoError(t, err)
		d, err := policy.EvaluateContext(ctx, p, policy.Input{Action: policy.Action{Kind: "payment.refund",
			Params: map[string]any{"amount": 40.0}}, Now: time.Now()})
		require.NoError(t, err)
		return d
	}
	require.Equal(t, policystore.GrantRuleName(g.ID), decide().Rule)

	// Another rule changes: the grant stays.
	src := strings.Replace(string(policy.Example), "Emails to customers", "Customer emails", 1)
	_, err = policystore.Apply(ctx, b.Pool, []byte(src), "admin@example.com")
	require.NoError(t, err)
	require.Equal(t, policystore.GrantRuleName(g.ID), decide().Rule)

	// The granted rule is tightened: the grant ends.
	src = strings.Replace(src, "    tier: explicit\n    deadline: 24h\n    on_timeout: reject\n",
		"    tier: explicit\n    approvals: 2\n    deadline: 24h\n    on_timeout: reject\n", 1)
	require.Contains(t, src, "approvals: 2")
	_, err = policystore.Apply(ctx, b.Pool, []byte(src), "admin@example.com")
	require.NoError(t, err)
	d := decide()
	require.Equal(t, "refund", d.Rule)
	require.Equal(t, 2, d.Approvals)
}
