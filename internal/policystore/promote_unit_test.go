package policystore

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// refundProposal is a proposal for the example policy's "refund" rule.
func refundProposal(t *testing.T) (*Proposal, *policy.Policy, *store.PolicyVersion) {
	t.Helper()
	base, err := policy.Load(policy.Example)
	require.NoError(t, err)
	base.Version = 3
	ranges := []store.ParamRange{{Param: "amount", Min: 5, Max: 120.5}}
	p := &Proposal{Rule: "refund", ActionKind: "payment.refund", BaseTier: vocab.TierExplicit,
		Tiers: []vocab.Tier{vocab.TierBatched, vocab.TierAuto}, Decided: 60, Approved: 60, Ranges: ranges,
		Params: []string{"amount"}, Condition: condition("payment.refund", ranges, []string{"amount"}), Since: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), PolicyVersion: 3}
	return p, base, &store.PolicyVersion{Version: 3, Source: string(policy.Example)}
}

func refund(amount any) policy.Input {
	params := map[string]any{}
	if amount != nil {
		params["amount"] = amount
	}
	return policy.Input{Action: policy.Action{Kind: "payment.refund", Params: params}, Now: time.Now()}
}

func TestPromoteRule(t *testing.T) {
	t.Parallel()
	p, base, active := refundProposal(t)
	pr, err := Promote(p, active, base, nil, ModeRule, vocab.TierAuto, time.Now(), 0)
	require.NoError(t, err)
	require.Equal(t, "refund-payment-refund-auto", pr.Rule.Name)
	next, err := policy.Load([]byte(pr.Source))
	require.NoError(t, err, "the new version loads")
	var names []string
	for _, r := range next.Rules {
		names = append(names, r.Name)
	}
	require.Equal(t, []string{"read-only", "big-refund", "refund-payment-refund-auto", "refund", "outbound-email",
		"small-crm-update", "ticket-triage", "spelling-fix"}, names)
	require.Contains(t, pr.Source, "  - name: refund-payment-refund-auto\n", "written at the list's indentation")
	require.Equal(t, len(strings.Split(active.Source, "\n"))+len(strings.Split(pr.Text, "\n")), len(strings.Split(pr.Source, "\n")),
		"only the rule's lines are added")

	for _, tc := range []struct {
		name      string
		amount    any
		rule      string
		uncertain bool
	}{
		{"InRange", 100.0, "refund-payment-refund-auto", false},
		{"AtTheTop", 120.5, "refund-payment-refund-auto", false},
		{"AboveTheRange", 121.0, "refund", false},
		{"BelowTheRange", 1.0, "refund", false},
		// big-refund cannot read a missing amount: the example's own
		// strictness, before the promoted rule is reached.
		{"Missing", nil, "big-refund", true},
		{"NotANumber", "100", "refund", false},
		{"BigRefundStillFirst", 900.0, "big-refund", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := policy.EvaluateContext(t.Context(), pr.Candidate, refund(tc.amount))
			require.NoError(t, err)
			require.Equal(t, tc.rule, d.Rule)
			require.Equal(t, tc.uncertain, d.Uncertain, "an odd parameter is no evaluation error of the promoted rule")
		})
	}

	t.Run("NotLooser", func(t *testing.T) {
		_, err := Promote(p, active, base, nil, ModeRule, vocab.TierExplicit, time.Now(), 0)
		require.ErrorIs(t, err, store.ErrInvalidInput)
	})
	t.Run("StaleVersion", func(t *testing.T) {
		_, err := Promote(p, &store.PolicyVersion{Version: 4, Source: active.Source}, base, nil, ModeRule, vocab.TierAuto, time.Now(), 0)
		require.ErrorIs(t, err, ErrPolicyChanged)
	})
	t.Run("FlowStyleRefused", func(t *testing.T) {
		src := `{version: 1, rules: [{name: refund, when: 'action.kind == "payment.refund"', tier: explicit}]}`
		flow, err := policy.Load([]byte(src))
		require.NoError(t, err)
		flow.Version = 3
		_, err = Promote(p, &store.PolicyVersion{Version: 3, Source: src}, flow, nil, ModeRule, vocab.TierAuto, time.Now(), 0)
		require.ErrorIs(t, err, store.ErrInvalidInput)
		_, err = Promote(p, &store.PolicyVersion{Version: 3, Source: src}, flow, nil, ModeGrant, vocab.TierAuto, time.Now(), 24*time.Hour)
		require.NoError(t, err, "a grant needs no edit of the document")
	})
}

func TestGrantExpires(t *testing.T) {
	t.Parallel()
	p, base, _ := refundProposal(t)
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	g := &store.Grant{ID: 7, Rule: p.Rule, ActionKind: p.ActionKind, Tier: vocab.TierBatched, Condition: p.Condition,
		Decided: 60, Approved: 60, WindowStart: p.Since, ExpiresAt: expires}
	granted := []*Grant{{Grant: g, Granted: ruleNamed(base, "refund")}}
	merged := WithGrants(base, granted)
	require.Len(t, merged.Rules, len(base.Rules)+1)
	require.Len(t, base.Rules, 7, "the compiled version is not changed")

	in := refund(50.0)
	in.Now = expires.Add(-time.Second)
	d, err := policy.EvaluateContext(t.Context(), merged, in)
	require.NoError(t, err)
	require.Equal(t, "grant-7", d.Rule)
	require.Equal(t, vocab.TierBatched, d.Tier)

	in.Now = expires
	d, err = policy.EvaluateContext(t.Context(), merged, in)
	require.NoError(t, err)
	require.Equal(t, "refund", d.Rule, "an expired grant no longer applies, cached or not")

	t.Run("BroadRuleGone", func(t *testing.T) {
		other, err := policy.Load([]byte("version: 1\nrules:\n  - name: all\n    when: \"true\"\n    tier: explicit\n"))
		require.NoError(t, err)
		require.Len(t, WithGrants(other, granted).Rules, 1)
	})
	t.Run("BroadRuleLoosened", func(t *testing.T) {
		other, err := policy.Load([]byte("version: 1\nrules:\n  - name: refund\n    when: \"true\"\n    tier: batched\n"))
		require.NoError(t, err)
		require.Len(t, WithGrants(other, granted).Rules, 1, "a grant never tightens nor sits beside an equal tier")
	})
	// The evidence was gathered under the rule as it was: a version that
	// rewrites or tightens it (same name, still stricter than the grant)
	// ends the grant.
	for _, tc := range []struct{ name, rule string }{
		{"BroadRuleRewritten", "when: \"true\"\n    tier: explicit"},
		{"BroadRuleTightened", "when: action.kind == \"payment.refund\"\n    tier: explicit\n    approvals: 2"},
		{"BroadRuleRolesChanged", "when: action.kind == \"payment.refund\"\n    tier: explicit\n    roles: [admin]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other, err := policy.Load([]byte("version: 1\nrules:\n  - name: refund\n    " + tc.rule + "\n"))
			require.NoError(t, err)
			require.Len(t, WithGrants(other, granted).Rules, 1)
		})
	}
	t.Run("BroadRuleUnchangedInANewVersion", func(t *testing.T) {
		other, err := policy.Load([]byte("version: 1\nrules:\n  - name: first\n    when: action.kind == \"x\"\n    tier: auto\n" +
			"  - name: refund\n    when: action.kind == \"payment.refund\"\n    tier: explicit\n"))
		require.NoError(t, err)
		require.Len(t, WithGrants(other, granted).Rules, 3, "the rest of the policy may change")
	})
	t.Run("NameTakenByThePolicy", func(t *testing.T) {
		other, err := policy.Load([]byte("version: 1\nrules:\n  - name: grant-7\n    when: action.kind == \"x\"\n    tier: explicit\n" +
			"  - name: refund\n    when: action.kind == \"payment.refund\"\n    tier: explicit\n"))
		require.NoError(t, err)
		require.Len(t, WithGrants(other, granted).Rules, 2, "two rules of one name would make decisions ambiguous")
	})
	t.Run("GrantedVersionGone", func(t *testing.T) {
		require.Len(t, WithGrants(base, []*Grant{{Grant: g}}).Rules, len(base.Rules))
	})
}

func TestCELDouble(t *testing.T) {
	t.Parallel()
	require.Equal(t, "5.0", celDouble(5))
	require.Equal(t, "-3.25", celDouble(-3.25))
	require.Equal(t, "1e+21", celDouble(1e21))
}

// TestConditionQuotesWhatItIsGiven: an action kind (which a model or an agent
// chose) is a string literal in the condition, never CEL.
func TestConditionQuotesWhatItIsGiven(t *testing.T) {
	t.Parallel()
	kind := `x" || true || "` + "\n\u202e"
	r, err := compileRule(ruleOut{Name: "n", When: condition(kind, nil, nil), Tier: vocab.TierAuto})
	require.NoError(t, err)
	p := &policy.Policy{Rules: []*policy.Rule{r}}
	for _, k := range []string{"other", "x", kind} {
		d, err := policy.EvaluateContext(t.Context(), p, policy.Input{Action: policy.Action{Kind: k}, Now: time.Now()})
		require.NoError(t, err)
		require.Equal(t, k == kind, d.Rule == "n", k)
	}
}

// TestProposalCoversOnlyWhatWasApproved: the condition derived from the
// approved actions' parameters lets through no parameter they never carried
// and no value of a numeric parameter outside its range, whether all of them
// or only some carried it, and a pair whose parameters cannot all be written
// exactly gets no proposal at all (a parameter left out would let any value
// of it through).
func TestProposalCoversOnlyWhatWasApproved(t *testing.T) {
	t.Parallel()
	seen := []store.ParamSeen{
		{ParamRange: store.ParamRange{Param: "amount", Min: 1, Max: 9}, Count: 10, Numbers: 10},
		{ParamRange: store.ParamRange{Param: "fee", Min: 0, Max: 2}, Count: 4, Numbers: 4},  // some approvals had none
		{ParamRange: store.ParamRange{Param: "note"}, Count: 10},                            // text: by name only
		{ParamRange: store.ParamRange{Param: "tax", Min: 0, Max: 1}, Count: 10, Numbers: 6}, // sometimes text
	}
	rs, names, ok := ranges(seen, 10)
	require.True(t, ok)
	require.Equal(t, []string{"amount", "fee", "note", "tax"}, names)
	r, err := compileRule(ruleOut{Name: "n", When: condition("payment.refund", rs, names), Tier: vocab.TierAuto})
	require.NoError(t, err)
	p := &policy.Policy{Rules: []*policy.Rule{r}}
	for _, tc := range []struct {
		name    string
		params  map[string]any
		covered bool
	}{
		{"InRange", map[string]any{"amount": 5.0, "note": "x", "tax": 0.5}, true},
		{"OptionalPresentInRange", map[string]any{"amount": 5.0, "fee": 1.0, "tax": 1.0}, true},
		{"OptionalOutOfRange", map[string]any{"amount": 5.0, "fee": 1e9, "tax": 1.0}, false},
		{"OptionalNotANumber", map[string]any{"amount": 5.0, "fee": "1", "tax": 1.0}, false},
		{"RequiredMissing", map[string]any{"tax": 1.0}, false},
		{"RequiredOutOfRange", map[string]any{"amount": 10.0, "tax": 1.0}, false},
		{"MixedTypeAsText", map[string]any{"amount": 5.0, "tax": "lots"}, false},
		{"MixedTypeOutOfRange", map[string]any{"amount": 5.0, "tax": 1e9}, false},
		{"NeverApprovedParameter", map[string]any{"amount": 5.0, "tax": 1.0, "force": true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := policy.EvaluateContext(t.Context(), p, policy.Input{
				Action: policy.Action{Kind: "payment.refund", Params: tc.params}, Now: time.Now()})
			require.NoError(t, err)
			require.Equal(t, tc.covered, d.Rule == "n")
		})
	}

	for _, tc := range []struct {
		name string
		seen store.ParamSeen
	}{
		{"BadName", store.ParamSeen{ParamRange: store.ParamRange{Param: "bad key"}, Count: 10}},
		{"QuoteInName", store.ParamSeen{ParamRange: store.ParamRange{Param: `a"]||true||["`}, Count: 10}},
		{"TooLarge", store.ParamSeen{ParamRange: store.ParamRange{Param: "huge"}, Count: 10, Numbers: 10, Huge: 1}},
		{"Infinite", store.ParamSeen{ParamRange: store.ParamRange{Param: "inf", Max: math.Inf(1)}, Count: 10, Numbers: 10}},
		{"BeyondFloatPrecision", store.ParamSeen{ParamRange: store.ParamRange{Param: "id", Min: 1, Max: 1e17}, Count: 10, Numbers: 10}},
		{"NegativeBeyondFloatPrecision", store.ParamSeen{ParamRange: store.ParamRange{Param: "id", Min: -1e17, Max: 1}, Count: 10, Numbers: 10}},
		{"NaN", store.ParamSeen{ParamRange: store.ParamRange{Param: "nan", Max: math.NaN()}, Count: 10, Numbers: 10}},
	} {
		t.Run("NoProposal/"+tc.name, func(t *testing.T) {
			_, _, ok := ranges(append(slices.Clone(seen), tc.seen), 10)
			require.False(t, ok)
		})
	}
	t.Run("NoProposal/TooManyRanges", func(t *testing.T) {
		var many []store.ParamSeen
		for i := range maxRangeParams + 1 {
			many = append(many, store.ParamSeen{ParamRange: store.ParamRange{Param: fmt.Sprintf("p%d", i), Max: 1}, Count: 10, Numbers: 10})
		}
		_, _, ok := ranges(many, 10)
		require.False(t, ok, "a range left out would let any value of it through")
		many = many[:maxRangeParams]
		for i := maxRangeParams; i < maxParams; i++ {
			many = append(many, store.ParamSeen{Count: 10})
		}
		for i := range many {
			many[i].Param = fmt.Sprintf("parameter_with_a_long_name_%02d", i)
		}
		rs, names, ok := ranges(many[:maxParams], 10)
		require.True(t, ok)
		require.Len(t, rs, maxRangeParams)
		exp := time.Now().Add(time.Hour)
		broad := &policy.Rule{When: `action.kind.startsWith("payment.") && action.params["amount"] > 100.0`}
		_, err := compileRule(narrowRule(&Proposal{Condition: condition("payment.refund", rs, names)}, broad, "n", vocab.TierAuto, &exp))
		require.NoError(t, err, "the largest condition a proposal can have stays within the cost limit")
	})
	t.Run("NoProposal/TooManyNames", func(t *testing.T) {
		var many []store.ParamSeen
		for i := range maxParams + 1 {
			many = append(many, store.ParamSeen{ParamRange: store.ParamRange{Param: fmt.Sprintf("p%d", i)}, Count: 10})
		}
		_, _, ok := ranges(many, 10)
		require.False(t, ok)
	})
	t.Run("NoParameters", func(t *testing.T) {
		r, err := compileRule(ruleOut{Name: "n", When: condition("k", nil, nil), Tier: vocab.TierAuto})
		require.NoError(t, err)
		p := &policy.Policy{Rules: []*policy.Rule{r}}
		d, err := policy.EvaluateContext(t.Context(), p, policy.Input{Action: policy.Action{Kind: "k", Params: map[string]any{"x": 1.0}}, Now: time.Now()})
		require.NoError(t, err)
		require.NotEqual(t, "n", d.Rule, "approvals without parameters cover no action with one")
	})
}
