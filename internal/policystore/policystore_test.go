package policystore_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

const strict = "version: 1\nrules:\n  - name: all-explicit\n    when: 'true'\n    tier: explicit\n"

func TestApplyAndLiveReload(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{NoWorker: true})
	ctx := context.Background()

	p, err := b.App.Policies.Active(ctx)
	require.NoError(t, err)
	require.Empty(t, p.Rules, "before any activation every action is explicit")

	// Prime the cache, then activate through another path (as another process would).
	v1, err := policystore.Apply(ctx, b.Pool, policy.Example, "alice@example.com")
	require.NoError(t, err)
	require.Equal(t, 1, v1.Version)
	require.Eventually(t, func() bool {
		p, err := b.App.Policies.Active(ctx)
		return err == nil && p.Version == 1
	}, 5*time.Second, 10*time.Millisecond, "the notification reloads the cache without a restart")

	_, err = policystore.Apply(ctx, b.Pool, []byte("version: 1\nrules:\n  - name: x\n    when: nope\n    tier: auto\n"), "mallory")
	var le *policy.LoadError
	require.True(t, errors.As(err, &le), err)
	active, err := store.PolicyGetActive(ctx, b.Pool)
	require.NoError(t, err)
	require.Equal(t, 1, active.Version, "a bad document changes nothing")

	v2, err := policystore.Apply(ctx, b.Pool, []byte(strict), "bob@example.com")
	require.NoError(t, err)
	require.Equal(t, 2, v2.Version)
	versions, err := store.PolicyList(ctx, b.Pool)
	require.NoError(t, err)
	require.Len(t, versions, 2)
	require.True(t, versions[0].Active)
	require.False(t, versions[1].Active, "exactly one is active")

	_, err = audit.Chain(ctx, b.Pool)
	require.NoError(t, err)
	res, err := audit.Verify(ctx, b.Pool)
	require.NoError(t, err)
	require.EqualValues(t, 2, res.Events, "each activation is an audit event")
}

func TestDemoWorkflowsAndSimulation(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{})
	ctx := context.Background()
	_, err := policystore.Apply(ctx, b.Pool, policy.Example, "admin@example.com")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		p, _ := b.App.Policies.Active(ctx)
		return p != nil && p.Version == 1
	}, 5*time.Second, 10*time.Millisecond)

	// Nine demo runs cover every workflow and every tier of the example policy.
	tiers := map[vocab.Tier]int{}
	var ids []string
	for n := range 9 {
		wf, key, input := demo.Input(n, "t-")
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: wf, BusinessKey: key, Input: input, StartedBy: "demo"})
		require.NoError(t, err)
		ids = append(ids, run.ID)
	}
	for _, id := range ids {
		run := b.WaitRun(t, id, vocab.RunWaitingHuman, vocab.RunCompleted)
		reqs, err := store.RequestListByRun(ctx, b.Pool, id)
		require.NoError(t, err)
		require.Len(t, reqs, 1)
		req := reqs[0]
		tiers[req.Tier]++
		require.Equal(t, 1, req.PolicyVersion, "the request records the policy version")
		require.NotEmpty(t, req.Rule)
		require.NotEmpty(t, req.Reason)
		if run.Status == vocab.RunWaitingHuman {
			actor := workflow.Actor{Name: "boss@example.com", Roles: []vocab.Role{"admin"}}
			res, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: actor, Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
			require.NoError(t, err)
			if res.Decision == nil { // a two-approver rule
				_, err = b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: workflow.Actor{Name: "boss2@example.com", Roles: []vocab.Role{"admin"}},
					Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
				require.NoError(t, err)
			}
		}
		done := b.WaitRun(t, id, vocab.RunCompleted)
		var out demo.Result
		require.NoError(t, json.Unmarshal(done.Output, &out))
		require.NotEmpty(t, out.Summary)
		require.Positive(t, out.OutboxID)
		require.Positive(t, done.TokensUsed)
	}
	require.Positive(t, tiers["auto"])
	require.Positive(t, tiers["batched"])
	require.Positive(t, tiers["explicit"])
	dups, err := store.OutboxDuplicates(ctx, b.Pool)
	require.NoError(t, err)
	require.Zero(t, dups)

	t.Run("SamePolicyChangesNothing", func(t *testing.T) {
		// The requests were recorded by the engine, so this is the demo's
		// "simulate the active policy" in every tier, auto included.
		same, err := policy.Load(policy.Example)
		require.NoError(t, err)
		sim, err := policystore.Simulate(ctx, b.Pool, same, time.Now().Add(-time.Hour))
		require.NoError(t, err)
		require.Equal(t, 9, sim.Requests)
		require.Zero(t, sim.Changed, "examples: %+v", sim.Examples)
		require.Zero(t, sim.Loosened)
		require.Empty(t, sim.Examples)
		for _, tc := range sim.Tiers {
			require.Equal(t, tiers[tc.Tier], tc.Recorded, tc.Tier)
			require.Equal(t, tc.Recorded, tc.Candidate, tc.Tier)
		}
	})

	t.Run("Simulate", func(t *testing.T) {
		candidate, err := policy.Load([]byte(strict))
		require.NoError(t, err)
		sim, err := policystore.Simulate(ctx, b.Pool, candidate, time.Now().Add(-time.Hour))
		require.NoError(t, err)
		require.Equal(t, 9, sim.Requests)
		require.Equal(t, tiers["auto"]+tiers["batched"], sim.Moved, "everything not explicit moves to explicit")
		require.Zero(t, sim.Loosenings[policystore.FieldTier], "no tier is looser")
		// "All explicit" is not stricter in every respect: the big refund's
		// two approvals become one, and deadlines go.
		require.Positive(t, sim.Loosened)
		for _, tc := range sim.Tiers {
			require.Equal(t, tiers[tc.Tier], tc.Recorded, tc.Tier)
		}

		loose, err := policy.Load([]byte("version: 1\nrules:\n  - name: all-auto\n    when: 'true'\n    tier: auto\n"))
		require.NoError(t, err)
		sim, err = policystore.Simulate(ctx, b.Pool, loose, time.Now().Add(-time.Hour))
		require.NoError(t, err)
		require.Equal(t, tiers["explicit"]+tiers["batched"], sim.Loosenings[policystore.FieldTier])
		require.Zero(t, sim.RiskyLoosened, "nothing was rejected")
		require.NotEmpty(t, sim.Examples)
	})
}

// A version stored under older checks that no longer loads (a fraction in
// approvals) makes every action explicit instead of failing every proposal.
func TestActiveThatNoLongerLoadsIsFailSafe(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{NoWorker: true})
	ctx := context.Background()
	src := "version: 1\nrules:\n  - name: loose\n    when: 'true'\n    tier: auto\n    approvals: 2.9\n"
	err := store.WithTx(ctx, b.Pool, func(ctx context.Context, tx pgx.Tx) error {
		_, err := store.PolicyActivate(ctx, tx, src, "sha-of-an-old-version", "alice@example.com")
		return err
	})
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	p, err := b.App.Policies.Active(ctx)
	require.NoError(t, err)
	require.Empty(t, p.Rules, "no rule of the broken version applies")
	d, err := policy.Evaluate(p, policy.Input{Action: policy.Action{Kind: "anything"}})
	require.NoError(t, err)
	require.Equal(t, vocab.TierExplicit, d.Tier)
}
