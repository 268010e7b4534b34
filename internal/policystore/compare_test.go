package policystore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// raised is the example policy with the big-refund threshold raised from
// 500 to 800.
func raised(t *testing.T) *policy.Policy {
	t.Helper()
	src := strings.ReplaceAll(string(policy.Example), "> 500.0", "> 800.0")
	require.NotEqual(t, string(policy.Example), src)
	p, err := policy.Load([]byte(src))
	require.NoError(t, err)
	return p
}

// recorded is the request the policy p would have opened for a refund of amount.
func recorded(t *testing.T, p *policy.Policy, amount float64) *store.Request {
	t.Helper()
	return recordedAction(t, p, refund(amount))
}

func refund(amount float64) policy.Action {
	return policy.Action{Kind: "payment.refund", Params: map[string]any{"amount": amount}}
}

// recordedAction is the request the policy p would have opened for a, with
// the requirements normalized as the engine records them.
func recordedAction(t *testing.T, p *policy.Policy, a policy.Action) *store.Request {
	t.Helper()
	d, err := policy.Evaluate(p, policy.Input{Action: a, Run: policy.Run{Workflow: "demo"}})
	require.NoError(t, err)
	created := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	r := &store.Request{Tier: d.Tier, Rule: d.Rule, ApprovalsRequired: d.RequiredApprovals(), Roles: d.Roles,
		OnTimeout: d.OnTimeout, EscalateTo: d.EscalateTo, CreatedAt: created}
	if d.Deadline > 0 {
		// The engine's clock set the deadline a moment before the row's creation time.
		at := created.Add(d.Deadline - 30*time.Millisecond)
		r.Deadline = &at
	}
	return r
}

func TestCompare(t *testing.T) {
	t.Parallel()
	example, err := policy.Load(policy.Example)
	require.NoError(t, err)

	t.Run("RaisedThresholdIsALoosening", func(t *testing.T) {
		t.Parallel()
		r := recorded(t, example, 600)
		require.Equal(t, "big-refund", r.Rule)
		d, err := policy.Evaluate(raised(t), policy.Input{Action: policy.Action{Kind: "payment.refund", Params: map[string]any{"amount": 600.0}}})
		require.NoError(t, err)
		require.Equal(t, r.Tier, d.Tier, "the tier does not move")
		loose := map[policystore.Field]bool{}
		for _, c := range policystore.Compare(r, d) {
			loose[c.Field] = c.Looser
		}
		require.Equal(t, map[policystore.Field]bool{
			policystore.FieldApprovals:  true,  // 2 → 1
			policystore.FieldRoles:      true,  // approver → any
			policystore.FieldDeadline:   true,  // 4h → 24h
			policystore.FieldOnTimeout:  false, // escalate → reject
			policystore.FieldEscalateTo: true,  // admin → none
		}, loose)
	})

	t.Run("SameDecisionIsNoChange", func(t *testing.T) {
		t.Parallel()
		r := recorded(t, example, 900)
		d, err := policy.Evaluate(raised(t), policy.Input{Action: policy.Action{Kind: "payment.refund", Params: map[string]any{"amount": 900.0}}})
		require.NoError(t, err)
		require.Empty(t, policystore.Compare(r, d), "a deadline set a moment before creation is the same deadline")
	})

	// Every action of the demo, one per rule of the example policy and one
	// that no rule matches, under each tier.
	actions := map[string]policy.Action{
		"read-only":        {Kind: "crm.lookup"},
		"big-refund":       refund(900),
		"refund":           refund(100),
		"outbound-email":   {Kind: "email.send"},
		"small-crm-update": {Kind: "crm.update", Params: map[string]any{"fields": map[string]any{"title": "CTO"}}},
		"ticket-triage":    {Kind: "ticket.update", Reversible: true},
		"spelling-fix":     {Kind: "doc.edit", Risk: "low"},
		policy.NoMatchRule: {Kind: "shell.exec"},
	}

	t.Run("SamePolicyIsNoChangeInEveryTier", func(t *testing.T) {
		t.Parallel()
		tiers := map[vocab.Tier]bool{}
		for rule, a := range actions {
			r := recordedAction(t, example, a)
			require.Equal(t, rule, r.Rule)
			tiers[r.Tier] = true
			d, err := policy.Evaluate(example, policy.Input{Action: a, Run: policy.Run{Workflow: "demo"}})
			require.NoError(t, err)
			require.Empty(t, policystore.Compare(r, d), rule)
		}
		require.Len(t, tiers, 3, "auto, batched and explicit are all compared")
	})

	// less returns, per field that changed, whether it is a loosening.
	less := func(r *store.Request, d policy.Decision) map[policystore.Field]bool {
		loose := map[policystore.Field]bool{}
		for _, c := range policystore.Compare(r, d) {
			loose[c.Field] = c.Looser
		}
		return loose
	}

	t.Run("ExplicitToAutoIsALooserTierOnly", func(t *testing.T) {
		t.Parallel()
		r := recordedAction(t, example, actions["outbound-email"])
		d := policy.Decision{Tier: vocab.TierAuto, Approvals: 0}
		require.Equal(t, map[policystore.Field]bool{policystore.FieldTier: true}, less(r, d),
			"one approval by a person becomes the policy's own: the tier says it, the count does not change")
	})

	t.Run("TwoApproversToAutoLoosensBoth", func(t *testing.T) {
		t.Parallel()
		r := recordedAction(t, example, actions["big-refund"])
		d := policy.Decision{Tier: vocab.TierAuto, Approvals: 0, Roles: []vocab.Role{vocab.RoleApprover},
			Deadline: time.Hour, OnTimeout: "escalate", EscalateTo: []vocab.Role{vocab.RoleAdmin}}
		require.Equal(t, map[policystore.Field]bool{policystore.FieldTier: true, policystore.FieldApprovals: true}, less(r, d))
		for _, c := range policystore.Compare(r, d) {
			if c.Field == policystore.FieldApprovals {
				require.Equal(t, "2", c.From)
				require.Equal(t, "1", c.To)
			}
		}
	})

	t.Run("TwoApprovalsToOne", func(t *testing.T) {
		t.Parallel()
		r := recordedAction(t, example, actions["big-refund"])
		one, err := policy.Load([]byte(strings.Replace(string(policy.Example), "approvals: 2", "approvals: 1", 1)))
		require.NoError(t, err)
		d, err := policy.Evaluate(one, policy.Input{Action: actions["big-refund"]})
		require.NoError(t, err)
		require.Equal(t, map[policystore.Field]bool{policystore.FieldApprovals: true}, less(r, d))
	})

	t.Run("AutoToExplicitIsATightening", func(t *testing.T) {
		t.Parallel()
		r := recordedAction(t, example, actions["read-only"])
		require.Equal(t, vocab.TierAuto, r.Tier)
		d := policy.Decision{Tier: vocab.TierExplicit, Approvals: 2}
		require.Equal(t, map[policystore.Field]bool{policystore.FieldTier: false, policystore.FieldApprovals: false}, less(r, d))
	})

	t.Run("Tightening", func(t *testing.T) {
		t.Parallel()
		r := recorded(t, example, 100)
		d := policy.Decision{Tier: vocab.TierExplicit, Approvals: 2, Roles: []vocab.Role{vocab.RoleApprover},
			Deadline: 24 * time.Hour, OnTimeout: "reject"}
		changes := policystore.Compare(r, d)
		require.Len(t, changes, 2)
		for _, c := range changes {
			require.False(t, c.Looser, c.Field)
		}
	})

	t.Run("TimeoutThatApproves", func(t *testing.T) {
		t.Parallel()
		r := recorded(t, example, 100) // 24h, reject
		d := policy.Decision{Tier: vocab.TierExplicit, Approvals: 1, Deadline: time.Hour, OnTimeout: "approve"}
		loose := map[policystore.Field]bool{}
		for _, c := range policystore.Compare(r, d) {
			loose[c.Field] = c.Looser
		}
		require.True(t, loose[policystore.FieldOnTimeout])
		require.True(t, loose[policystore.FieldDeadline], "an approving deadline that comes sooner lets the action through sooner")
	})
}

// refunds registers a workflow that proposes one refund of the input amount.
func refunds(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "refunds", func(ctx context.Context, amount float64) (string, error) {
		d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "payment.refund", Summary: "Refund",
			Params: map[string]any{"amount": amount}})
		return string(d.Verdict), err
	})
}

func TestSimulateFlagsEveryLoosening(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{Register: refunds})
	ctx := context.Background()
	_, err := policystore.Apply(ctx, b.Pool, policy.Example, "admin@example.com")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, _ := b.App.Policies.Active(ctx)
		return p != nil && len(p.Rules) > 0
	}, 5*time.Second, 10*time.Millisecond)
	for i, amount := range []string{"600", "900", "100"} {
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "refunds", BusinessKey: "r" + amount,
			Input: []byte(amount), StartedBy: "test"})
		require.NoError(t, err, i)
		b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	}
	sim, err := policystore.Simulate(ctx, b.Pool, raised(t), time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, 3, sim.Requests)
	require.Zero(t, sim.Moved, "every refund stays explicit")
	require.Equal(t, 1, sim.Changed, "only the refund of 600 is decided differently")
	require.Equal(t, 1, sim.Loosened)
	require.Equal(t, 1, sim.Loosenings[policystore.FieldApprovals])
	require.Len(t, sim.Examples, 1)
	require.True(t, sim.Examples[0].Looser)
	require.Equal(t, "big-refund", sim.Examples[0].FromRule)
	require.Equal(t, "refund", sim.Examples[0].ToRule)
}
