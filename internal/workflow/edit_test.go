package workflow_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// editPolicy puts refunds on rules that differ in each way an edit could
// escape: tier (tiny is batched), approvals (big-refund), roles (large).
const editPolicy = `version: 1
rules:
  - name: audited
    when: action.kind == "payment.refund" && has(action.params.meta) && action.params.meta.level == "audit"
    tier: explicit
    approvals: 2
  - name: bobs-first-step
    when: action.kind == "payment.refund" && run.input.Customer == "bob@example.com" && run.steps_used == 0 && double(action.params.amount) > 200.0
    tier: explicit
    roles: [approver]
  - name: tiny
    when: action.kind == "payment.refund" && double(action.params.amount) <= 10.0
    tier: batched
    batch: {max_size: 10, max_wait: 1h}
  - name: big-refund
    when: action.kind == "payment.refund" && double(action.params.amount) > 10000.0
    tier: explicit
    approvals: 2
    roles: [approver]
  - name: large
    when: action.kind == "payment.refund" && double(action.params.amount) > 500.0
    tier: explicit
    roles: [approver]
  - name: refund
    when: action.kind == "payment.refund"
    tier: explicit
`

type refundIn struct {
	Amount   float64
	Customer string
	Level    string // when set, params carry meta.level
}

// refunder proposes a refund and applies what was decided; its output is the
// decision it got, so a test sees what the workflow received.
func refunder(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "refunder", func(ctx context.Context, in refundIn) (workflow.Decision, error) {
		params := map[string]any{"amount": in.Amount, "customer": in.Customer}
		if in.Level != "" {
			params["meta"] = map[string]any{"level": in.Level}
		}
		d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "payment.refund", Summary: "Refund " + in.Customer,
			Params: params, Checks: []workflow.Check{{Name: "customer on file", Passed: true}}})
		if err != nil {
			return d, err
		}
		return workflow.Effect(ctx, "apply", func(ctx context.Context, ec workflow.EffectContext) (workflow.Decision, error) {
			_, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), "refund", d.Params)
			return d, err
		})
	})
}

func TestEditIsJudgedByThePolicy(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{Register: refunder})
	ctx := context.Background()
	pv, err := policystore.Apply(ctx, b.Pool, []byte(editPolicy), "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()

	startRefund := func(t *testing.T, key string, amount float64) (*store.Run, *store.Request) {
		t.Helper()
		run := b.WaitRun(t, start(t, b, "refunder", key, refundIn{Amount: amount, Customer: "ada@example.com"}).ID, vocab.RunWaitingHuman)
		return run, b.PendingRequest(t, run.ID)
	}
	edit := func(req *store.Request, actor workflow.Actor, params map[string]any) (*workflow.DecideResult, error) {
		return b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: actor, Verdict: vocab.VerdictEdit,
			PayloadHash: req.PayloadHash, EditedParams: params})
	}
	approver := workflow.Actor{Name: "appr@example.com", Roles: []vocab.Role{"approver"}}
	admin := workflow.Actor{Name: "root@example.com", Roles: []vocab.Role{"admin"}}
	count := func(t *testing.T, sql string, args ...any) int {
		t.Helper()
		var n int
		require.NoError(t, b.Pool.QueryRow(ctx, sql, args...).Scan(&n))
		return n
	}
	// refused checks that a refused edit wrote nothing: no decision, no vote,
	// no audit event, and the run still waits on its pending request.
	refused := func(t *testing.T, run *store.Run, req *store.Request, events int) {
		t.Helper()
		require.Zero(t, count(t, `SELECT count(*) FROM decisions WHERE request_id = $1`, req.ID))
		require.Zero(t, count(t, `SELECT count(*) FROM approval_votes WHERE request_id = $1`, req.ID))
		require.Equal(t, events, count(t, `SELECT count(*) FROM audit_events`), "no audit event")
		got, err := store.RequestGet(ctx, b.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestPending, got.Status)
		waiting, err := store.RunGet(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunWaitingHuman, waiting.Status)
		require.Zero(t, b.LiveJobs(t, run.ID))
	}

	t.Run("WithinTheRule", func(t *testing.T) {
		run, req := startRefund(t, "within", 100)
		require.Equal(t, "refund", req.Rule)
		edited := map[string]any{"amount": 80.0, "customer": "ada@example.com"}
		res, err := edit(req, reviewer("rev@example.com"), edited)
		require.NoError(t, err)

		// The edited action is the proposal with the edited parameters and
		// without the proposal's checks, which were about other parameters.
		var action workflow.Action
		require.NoError(t, json.Unmarshal(req.Action, &action))
		action.Params, action.Checks = edited, nil
		raw, err := json.Marshal(action)
		require.NoError(t, err)
		wantHash := workflow.PayloadHash(raw)

		d := res.Decision
		require.Equal(t, "refund", d.Rule, "the proposal's rule")
		require.Equal(t, req.PayloadHash, d.PayloadHash, "the hash of what the reviewer saw")
		require.Equal(t, "refund", *d.EditedRule)
		require.Equal(t, pv.Version, *d.EditedPolicyVersion)
		require.Equal(t, wantHash, *d.EditedPayloadHash)
		require.NotEqual(t, req.PayloadHash, wantHash)
		stored, err := store.DecisionGetByRequest(ctx, b.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, wantHash, *stored.EditedPayloadHash)
		require.Equal(t, "refund", *stored.EditedRule)

		var details map[string]any
		require.NoError(t, b.Pool.QueryRow(ctx, `SELECT details FROM audit_events
			WHERE kind = 'decision.recorded' AND subject_id = $1`, req.ID).Scan(&details))
		require.Equal(t, "refund", details["rule"])
		require.Equal(t, "refund", details["edited_rule"])
		require.EqualValues(t, pv.Version, details["edited_policy_version"])
		require.Equal(t, wantHash, details["edited_payload_hash"])
		require.Equal(t, req.PayloadHash, details["payload_hash"])

		done := b.WaitRun(t, run.ID, vocab.RunCompleted)
		var got workflow.Decision
		require.NoError(t, json.Unmarshal(done.Output, &got))
		require.Equal(t, vocab.VerdictEdit, got.Verdict)
		require.Equal(t, edited, got.Params, "the workflow applied the edited parameters")
		require.Equal(t, "refund", got.EditedRule)
		require.Equal(t, wantHash, got.EditedPayloadHash)
	})

	t.Run("OntoMoreApprovalsRefused", func(t *testing.T) {
		run, req := startRefund(t, "big", 100)
		events := count(t, `SELECT count(*) FROM audit_events`)
		for _, actor := range []workflow.Actor{reviewer("rev@example.com"), approver, admin} {
			_, err := edit(req, actor, map[string]any{"amount": 250000.0, "customer": "mallory@example.com"})
			require.ErrorIs(t, err, workflow.ErrEditNeedsReview, actor.Name)
			require.ErrorContains(t, err, `rule "big-refund"`)
			require.ErrorContains(t, err, "needs 2 approvers")
		}
		refused(t, run, req, events)

		// The request itself is still decidable as it was proposed.
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer("rev@example.com"),
			Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		done := b.WaitRun(t, run.ID, vocab.RunCompleted)
		var got workflow.Decision
		require.NoError(t, json.Unmarshal(done.Output, &got))
		require.EqualValues(t, 100, got.Params["amount"])
	})

	t.Run("OntoAnotherRoleRefused", func(t *testing.T) {
		run, req := startRefund(t, "role", 100)
		events := count(t, `SELECT count(*) FROM audit_events`)
		_, err := edit(req, reviewer("rev@example.com"), map[string]any{"amount": 600.0, "customer": "ada@example.com"})
		require.ErrorIs(t, err, workflow.ErrEditNeedsReview)
		require.ErrorContains(t, err, `rule "large"`)
		require.ErrorContains(t, err, "needs one of the roles approver, admin")
		refused(t, run, req, events)

		// An approver may decide that rule alone, so their edit goes through.
		res, err := edit(req, approver, map[string]any{"amount": 600.0, "customer": "ada@example.com"})
		require.NoError(t, err)
		require.Equal(t, "refund", res.Decision.Rule)
		require.Equal(t, "large", *res.Decision.EditedRule)
		b.WaitRun(t, run.ID, vocab.RunCompleted)
	})

	t.Run("OntoStricterTierRefused", func(t *testing.T) {
		run, req := startRefund(t, "tier", 5)
		require.Equal(t, vocab.TierBatched, req.Tier)
		events := count(t, `SELECT count(*) FROM audit_events`)
		_, err := edit(req, reviewer("rev@example.com"), map[string]any{"amount": 100.0, "customer": "ada@example.com"})
		require.ErrorIs(t, err, workflow.ErrEditNeedsReview)
		require.ErrorContains(t, err, `rule "refund"`)
		require.ErrorContains(t, err, "is explicit where the proposal was batched")
		refused(t, run, req, events)
	})

	t.Run("RunFieldsAsTheProposalSawThem", func(t *testing.T) {
		raw, _ := json.Marshal(refundIn{Amount: 100, Customer: "bob@example.com"})
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "refunder", BusinessKey: "bob", Input: raw, StartedBy: "agent"})
		require.NoError(t, err)
		run = b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, run.ID)
		require.Equal(t, "refund", req.Rule)
		_, err = edit(req, reviewer("rev@example.com"), map[string]any{"amount": 300.0, "customer": "bob@example.com"})
		require.ErrorIs(t, err, workflow.ErrEditNeedsReview)
		require.ErrorContains(t, err, `rule "bobs-first-step"`)
		require.ErrorContains(t, err, "needs one of the roles approver, admin", "evaluated, not a fail-safe")
	})

	t.Run("BrokenConditionRefused", func(t *testing.T) {
		raw, _ := json.Marshal(refundIn{Amount: 100, Customer: "ada@example.com", Level: "low"})
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "refunder", BusinessKey: "broken", Input: raw, StartedBy: "agent"})
		require.NoError(t, err)
		run = b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, run.ID)
		require.Equal(t, "refund", req.Rule)
		events := count(t, `SELECT count(*) FROM audit_events`)
		// Without meta.level the first rule's condition errors: the policy's
		// fail-safe is explicit with one approval, which must not stand in
		// for the rules it did not reach.
		_, err = edit(req, reviewer("rev@example.com"), map[string]any{"amount": 250000.0, "customer": "ada@example.com", "meta": map[string]any{}})
		require.ErrorIs(t, err, workflow.ErrEditNeedsReview)
		require.ErrorContains(t, err, `rule "audited"`)
		require.ErrorContains(t, err, "could not be evaluated")
		refused(t, run, req, events)
	})

	t.Run("OverTheOutputLimitRefused", func(t *testing.T) {
		run, req := startRefund(t, "huge", 100)
		events := count(t, `SELECT count(*) FROM audit_events`)
		_, err := edit(req, reviewer("rev@example.com"), map[string]any{"amount": 100.0, "customer": strings.Repeat("m", 300<<10)})
		require.ErrorIs(t, err, workflow.ErrInvalidInput)
		require.ErrorContains(t, err, "over the limit of 262144 bytes")
		refused(t, run, req, events)
	})

	t.Run("ThePolicyInForceJudges", func(t *testing.T) {
		run, req := startRefund(t, "newer", 100)
		// Activated while the request waits: refunds over 50 now need an approver.
		newer, err := policystore.Apply(ctx, b.Pool, []byte(`version: 1
rules:
  - name: over-50
    when: action.kind == "payment.refund" && double(action.params.amount) > 50.0
    tier: explicit
    roles: [approver]
  - name: refund
    when: action.kind == "payment.refund"
    tier: explicit
`), "setup")
		require.NoError(t, err)
		b.App.Policies.Invalidate()
		t.Cleanup(func() {
			_, _ = policystore.Apply(context.Background(), b.Pool, []byte(editPolicy), "setup")
			b.App.Policies.Invalidate()
		})
		_, err = edit(req, reviewer("rev@example.com"), map[string]any{"amount": 90.0, "customer": "ada@example.com"})
		require.ErrorIs(t, err, workflow.ErrEditNeedsReview)
		require.ErrorContains(t, err, `rule "over-50"`)
		res, err := edit(req, reviewer("rev@example.com"), map[string]any{"amount": 40.0, "customer": "ada@example.com"})
		require.NoError(t, err)
		require.Equal(t, pv.Version, res.Decision.PolicyVersion, "the proposal's version")
		require.Equal(t, newer.Version, *res.Decision.EditedPolicyVersion, "the version that judged the edit")
		b.WaitRun(t, run.ID, vocab.RunCompleted)
	})
}

// The model's claims (risk, reversible, estimated cost) described the
// proposal, not the edit: a rule keyed on one must not wave an edited action
// through on a claim made about other parameters.
func TestEditIsNotJudgedOnTheModelsClaims(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{Register: refunder})
	ctx := context.Background()
	_, err := policystore.Apply(ctx, b.Pool, []byte(`version: 1
rules:
  - name: cheap
    when: action.kind == "payment.refund" && action.estimated_cost < 100.0
    tier: explicit
  - name: costly
    when: action.kind == "payment.refund"
    tier: explicit
    approvals: 2
    roles: [approver]
`), "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	run := b.WaitRun(t, start(t, b, "refunder", "claims", refundIn{Amount: 100, Customer: "ada@example.com"}).ID, vocab.RunWaitingHuman)
	req := b.PendingRequest(t, run.ID)
	require.Equal(t, "cheap", req.Rule, "the model claimed nothing about cost")

	_, err = b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer("rev@example.com"), Verdict: vocab.VerdictEdit,
		PayloadHash: req.PayloadHash, EditedParams: map[string]any{"amount": 250000.0, "customer": "mallory@example.com"}})
	require.ErrorIs(t, err, workflow.ErrEditNeedsReview)
	require.Contains(t, err.Error(), `rule "costly"`)
	require.Contains(t, err.Error(), "not taken on the model's word")
	got, err := store.RequestGet(ctx, b.Pool, req.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestPending, got.Status, "nothing was decided")
}
