package store_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// decided inserts a request of rule and kind with params, decided with
// verdict (none when "") after took, created age ago.
func (b *testBundle) decided(t *testing.T, rule, kind string, tier vocab.Tier, params string, verdict vocab.Verdict, took, age time.Duration) {
	t.Helper()
	b.decidedBy(t, "ann", rule, kind, tier, params, verdict, took, age)
}

// decidedBy is decided with the decision's actor.
func (b *testBundle) decidedBy(t *testing.T, actor, rule, kind string, tier vocab.Tier, params string, verdict vocab.Verdict, took, age time.Duration) {
	t.Helper()
	run := b.run(t, "w")
	r, err := store.RequestInsert(b.ctx, b.pool, &store.Request{RunID: run.ID, Workflow: "w", Tier: tier,
		Status: vocab.RequestPending, ActionKind: kind, Summary: "s",
		Action:      json.RawMessage(fmt.Sprintf(`{"kind":%q,"params":%s}`, kind, params)),
		PayloadHash: "h", PolicyVersion: 1, Rule: rule, Reason: "r", ApprovalsRequired: 1, StartedBy: "test"})
	require.NoError(t, err)
	if verdict != "" {
		_, err = store.DecisionInsert(b.ctx, b.pool, &store.Decision{RequestID: r.ID, RunID: run.ID, Actor: actor,
			Verdict: verdict, PayloadHash: "h", PolicyVersion: 1, Rule: rule, Tier: tier})
		require.NoError(t, err)
	}
	// The times are set here, as the history a busy deployment would have.
	created := time.Now().Add(-age)
	_, err = b.pool.Exec(b.ctx, `UPDATE approval_requests SET created_at = $2 WHERE id = $1`, r.ID, created)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `UPDATE decisions SET created_at = $2 WHERE request_id = $1`, r.ID, created.Add(took))
	require.NoError(t, err)
}

func TestRuleStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const hour = time.Hour
	for i := range 8 {
		b.decided(t, "refund", "payment.refund", vocab.TierExplicit, fmt.Sprintf(`{"amount":%d,"note":"x"}`, 10*(i+1)),
			vocab.VerdictApprove, time.Duration(i+1)*time.Second, hour)
	}
	b.decided(t, "refund", "payment.refund", vocab.TierExplicit, `{"amount":900}`, vocab.VerdictReject, 60*time.Second, hour)
	b.decided(t, "refund", "payment.refund", vocab.TierExplicit, `{"amount":5}`, vocab.VerdictEdit, 20*time.Second, hour)
	b.decided(t, "refund", "payment.refund", vocab.TierExplicit, `{"amount":7}`, "", 0, hour)
	b.decided(t, "refund", "payment.void", vocab.TierExplicit, `{}`, vocab.VerdictRequestChanges, 30*time.Second, hour)
	b.decided(t, "refund", "payment.refund", vocab.TierAuto, `{"amount":1}`, vocab.VerdictApprove, 0, hour)
	// Out of the window: counted nowhere.
	b.decided(t, "refund", "payment.refund", vocab.TierExplicit, `{"amount":5000}`, vocab.VerdictApprove, time.Second, 48*hour)
	b.decided(t, "read-only", "search", vocab.TierAuto, `{}`, vocab.VerdictApprove, 0, hour)

	since := time.Now().Add(-24 * hour)
	w, err := store.RuleStats(b.ctx, b.pool, since, 5*time.Second, store.MaxStatsRequests)
	require.NoError(t, err)
	require.False(t, w.Truncated)
	require.False(t, w.Capped)
	require.Equal(t, since, w.From)
	stats := w.Stats
	byKey := map[string]*store.RuleStat{}
	for _, s := range stats {
		byKey[s.Rule+"/"+s.ActionKind] = s
	}
	require.Len(t, stats, 5, "read-only and its kind, refund and its two kinds")

	t.Run("RuleTotal", func(t *testing.T) {
		s := byKey["refund/"]
		require.True(t, s.RuleTotal)
		require.Equal(t, 13, s.Volume)
		require.Equal(t, 1, s.Auto)
		require.Equal(t, 1, s.Undecided)
		require.Equal(t, 8, s.Approved)
		require.Equal(t, 1, s.Rejected)
		require.Equal(t, 1, s.Edited)
		require.Equal(t, 1, s.ChangesRequested)
		require.Equal(t, 11, s.Decided())
		// Human decisions took 1..8, 60, 20 and 30 s: the median is 6 s.
		require.Equal(t, 6*time.Second, s.MedianDecision)
		require.Equal(t, 4500*time.Millisecond, s.MedianApproval)
		require.Equal(t, 4, s.FastApprovals, "1 to 4 s are under 5 s")
		require.Equal(t, "refund/", stats[2].Rule+"/"+stats[2].ActionKind, "each rule's total comes first")
	})
	t.Run("PerKind", func(t *testing.T) {
		s := byKey["refund/payment.refund"]
		require.False(t, s.RuleTotal)
		require.Equal(t, 12, s.Volume)
		require.Equal(t, 10, s.Decided())
		require.Equal(t, 1, byKey["refund/payment.void"].ChangesRequested)
		require.Equal(t, 1, byKey["read-only/search"].Auto)
		require.Zero(t, byKey["read-only/search"].Decided(), "auto approvals are no human decisions")
	})
	t.Run("CappedToTheLatestRequests", func(t *testing.T) {
		// 15 requests in the window: the latest 12 are read, from just
		// after the 13th newest.
		w, err := store.RuleStats(b.ctx, b.pool, since, 5*time.Second, 12)
		require.NoError(t, err)
		require.True(t, w.Capped)
		require.True(t, w.From.After(since))
		volume := 0
		for _, s := range w.Stats {
			if s.RuleTotal {
				volume += s.Volume
			}
		}
		require.Equal(t, 12, volume)
	})
	t.Run("ParamRanges", func(t *testing.T) {
		refunds := store.RuleKind{Rule: "refund", ActionKind: "payment.refund"}
		seen, err := store.RuleParamRanges(b.ctx, b.pool, time.Now().Add(-24*hour),
			[]store.RuleKind{refunds, {Rule: "refund", ActionKind: "payment.void"}, {Rule: "read-only", ActionKind: "payment.refund"}})
		require.NoError(t, err)
		require.Len(t, seen, 1, "no parameter for the others")
		require.Equal(t, []store.ParamSeen{
			{ParamRange: store.ParamRange{Param: "amount", Min: 10, Max: 80}, Count: 8, Numbers: 8},
			{ParamRange: store.ParamRange{Param: "note"}, Count: 8},
		}, seen[refunds],
			"the unedited human approvals of the window: not the rejected 900, the edited 5, the auto 1 or the old 5000; text parameters by name only")
	})
}

// TestRuleParamRangesMixedTypes: a parameter that is a number in some
// approvals and something else, or a number too large for a float, in others
// is reported as such, so that a proposal never narrows on part of it.
func TestRuleParamRangesMixedTypes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, params := range []string{`{"amount":5,"fee":1}`, `{"amount":"5000","fee":2}`, `{"amount":7,"fee":1e400}`, `{"amount":9}`} {
		b.decided(t, "refund", "payment.refund", vocab.TierExplicit, params, vocab.VerdictApprove, time.Second, time.Hour)
	}
	refunds := store.RuleKind{Rule: "refund", ActionKind: "payment.refund"}
	seen, err := store.RuleParamRanges(b.ctx, b.pool, time.Now().Add(-24*time.Hour), []store.RuleKind{refunds})
	require.NoError(t, err)
	require.Equal(t, []store.ParamSeen{
		{ParamRange: store.ParamRange{Param: "amount", Min: 5, Max: 9}, Count: 4, Numbers: 3},
		{ParamRange: store.ParamRange{Param: "fee", Min: 1, Max: 2}, Count: 3, Numbers: 3, Huge: 1},
	}, seen[refunds])
}

// TestRuleStatsDeadlineApprovalsAreNoEvidence: what a batched rule's deadline
// approved (on_timeout: approve, actor policy:RULE) nobody looked at: it is
// decided but not approved, and its parameters are no evidence for a range.
func TestRuleStatsDeadlineApprovalsAreNoEvidence(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := range 10 {
		b.decidedBy(t, "policy:refund", "refund", "payment.refund", vocab.TierBatched, fmt.Sprintf(`{"amount":%d}`, 1000*(i+1)),
			vocab.VerdictApprove, 24*time.Hour, time.Hour)
	}
	b.decided(t, "refund", "payment.refund", vocab.TierBatched, `{"amount":5}`, vocab.VerdictApprove, time.Second, time.Hour)
	w, err := store.RuleStats(b.ctx, b.pool, time.Now().Add(-48*time.Hour), 5*time.Second, store.MaxStatsRequests)
	require.NoError(t, err)
	var s *store.RuleStat
	for _, st := range w.Stats {
		if !st.RuleTotal && st.ActionKind == "payment.refund" {
			s = st
		}
	}
	require.NotNil(t, s)
	require.Equal(t, 1, s.Approved)
	require.Equal(t, 10, s.DeadlineApprovals)
	require.Equal(t, 11, s.Decided())
	require.Equal(t, 1, s.FastApprovals)
	require.Equal(t, time.Second, s.MedianApproval)

	refunds := store.RuleKind{Rule: "refund", ActionKind: "payment.refund"}
	seen, err := store.RuleParamRanges(b.ctx, b.pool, time.Now().Add(-48*time.Hour), []store.RuleKind{refunds})
	require.NoError(t, err)
	require.Equal(t, []store.ParamSeen{{ParamRange: store.ParamRange{Param: "amount", Min: 5, Max: 5}, Count: 1, Numbers: 1}}, seen[refunds])
}
