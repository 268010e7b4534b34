package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/vocab"
)

func mustLoad(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Load([]byte(src))
	require.NoError(t, err)
	return p
}

func TestExampleCoversEveryTier(t *testing.T) {
	p := mustLoad(t, string(Example))
	seen := map[vocab.Tier]bool{}
	for _, r := range p.Rules {
		seen[r.Tier] = true
	}
	require.True(t, seen[vocab.TierAuto] && seen[vocab.TierBatched] && seen[vocab.TierExplicit])
}

func TestEvaluate(t *testing.T) {
	p := mustLoad(t, string(Example))
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		action    Action
		run       Run
		tier      vocab.Tier
		rule      string
		approvals int
		batchKey  string
		reason    string
	}{
		{name: "ReadOnlyIsAuto", action: Action{Kind: "crm.lookup"}, tier: vocab.TierAuto, rule: "read-only"},
		{name: "BigRefundNeedsTwo", action: Action{Kind: "payment.refund", Params: map[string]any{"amount": 900.0}},
			tier: vocab.TierExplicit, rule: "big-refund", approvals: 2},
		{name: "IntegerAmountWorks", action: Action{Kind: "payment.refund", Params: map[string]any{"amount": 900}},
			tier: vocab.TierExplicit, rule: "big-refund", approvals: 2},
		{name: "SmallRefund", action: Action{Kind: "payment.refund", Params: map[string]any{"amount": 20.0}},
			tier: vocab.TierExplicit, rule: "refund", approvals: 1},
		{name: "MissingFieldIsExplicitNeverAuto", action: Action{Kind: "payment.refund", Params: map[string]any{}},
			tier: vocab.TierExplicit, rule: "big-refund", reason: "could not be evaluated"},
		{name: "SmallCRMUpdateBatched", action: Action{Kind: "crm.update", Params: map[string]any{"fields": map[string]any{"a": 1, "b": 2}}},
			run: Run{Workflow: "lead_enrichment"}, tier: vocab.TierBatched, rule: "small-crm-update",
			batchKey: "workflow=lead_enrichment;action.kind=crm.update"},
		{name: "LargeCRMUpdateFallsThrough", action: Action{Kind: "crm.update", Params: map[string]any{"fields": map[string]any{"a": 1, "b": 2, "c": 3, "d": 4}}},
			tier: vocab.TierExplicit, rule: NoMatchRule, reason: "no rule matched"},
		{name: "NoMatchIsExplicit", action: Action{Kind: "rm -rf"}, tier: vocab.TierExplicit, rule: NoMatchRule},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Evaluate(p, Input{Action: tc.action, Run: tc.run, Now: now})
			require.NoError(t, err)
			require.Equal(t, tc.tier, d.Tier)
			require.Equal(t, tc.rule, d.Rule)
			if tc.approvals > 0 {
				require.Equal(t, tc.approvals, d.Approvals)
			}
			if tc.batchKey != "" {
				require.Equal(t, tc.batchKey, d.BatchKey)
				require.NotNil(t, d.Batch)
			}
			require.NotEmpty(t, d.Reason)
			if tc.reason != "" {
				require.Contains(t, d.Reason, tc.reason)
			}
		})
	}
}

func TestRuleFeatures(t *testing.T) {
	p := mustLoad(t, `
version: 1
rules:
  - name: night
    when: now.getHours() < 6 && action.kind == "deploy"
    tier: explicit
    approvals: 2
    roles: [approver, admin]
    deadline: 2d
    on_timeout: escalate
    escalate_to: [admin]
  - name: costly
    when: action.estimated_cost > 100.0 || run.tokens_used > 10000
    tier: explicit
  - name: by-target
    when: action.kind == "deploy"
    tier: batched
    deadline: 30m
    on_timeout: approve
    batch: {group_by: [action.target, action.params.env], max_size: 5, max_wait: 1m}
  - name: vip
    when: run.input.customer.startsWith("vip-")
    tier: explicit
  - name: rest
    when: "true"
    tier: auto
`)
	at := func(h int) time.Time { return time.Date(2026, 1, 1, h, 0, 0, 0, time.UTC) }
	d, _ := Evaluate(p, Input{Action: Action{Kind: "deploy"}, Now: at(3)})
	require.Equal(t, "night", d.Rule)
	require.Equal(t, 2, d.Approvals)
	require.Equal(t, []vocab.Role{vocab.RoleApprover, vocab.RoleAdmin}, d.Roles)
	require.Equal(t, 48*time.Hour, d.Deadline)
	require.Equal(t, TimeoutEscalate, d.OnTimeout)
	require.Equal(t, []vocab.Role{vocab.RoleAdmin}, d.EscalateTo)

	d, _ = Evaluate(p, Input{Action: Action{Kind: "deploy", Target: "api", Params: map[string]any{"env": "prod"}}, Now: at(12)})
	require.Equal(t, "by-target", d.Rule)
	require.Equal(t, "action.target=api;action.params.env=prod", d.BatchKey)
	require.Equal(t, 5, d.Batch.MaxSize)
	require.Equal(t, time.Minute, d.Batch.MaxWait)
	require.Equal(t, TimeoutApprove, d.OnTimeout)

	d, _ = Evaluate(p, Input{Action: Action{Kind: "x", EstimatedCost: 150}, Now: at(12)})
	require.Equal(t, "costly", d.Rule)
	d, _ = Evaluate(p, Input{Action: Action{Kind: "x"}, Run: Run{TokensUsed: 20000}, Now: at(12)})
	require.Equal(t, "costly", d.Rule)
	d, _ = Evaluate(p, Input{Action: Action{Kind: "x"}, Run: Run{Input: map[string]any{"customer": "vip-7"}}, Now: at(12)})
	require.Equal(t, "vip", d.Rule)
	d, _ = Evaluate(p, Input{Action: Action{Kind: "x"}, Run: Run{Input: map[string]any{"customer": 7}}, Now: at(12)})
	require.Equal(t, "vip", d.Rule, "a type error at run time stops at that rule, explicit")
	require.Equal(t, vocab.TierExplicit, d.Tier)
	d, _ = Evaluate(p, Input{Action: Action{Kind: "x"}, Run: Run{Input: map[string]any{"customer": "ann"}}, Now: at(12)})
	require.Equal(t, vocab.TierAuto, d.Tier)
	require.Zero(t, d.Approvals)
}

func TestLoadRefusesBadDocuments(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"YAMLError", "version: 1\nrules: [", []string{"line"}},
		{"Empty", "", []string{"empty"}},
		{"WrongVersion", "version: 2\nrules: []", []string{"version must be 1"}},
		{"UnknownField", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: auto\n    colour: red\n", []string{"line 6", "colour"}},
		{"CELSyntax", "version: 1\nrules:\n  - name: a\n    tier: auto\n    when: action.kind ==\n", []string{`line 5: rule "a": when:`, "Syntax error"}},
		{"CELUnknownField", "version: 1\nrules:\n  - name: a\n    when: action.knd == 'x'\n    tier: auto\n", []string{`rule "a"`, `no field "knd"`}},
		{"CELUnknownVariable", "version: 1\nrules:\n  - name: a\n    when: actor == 'x'\n    tier: auto\n", []string{"undeclared reference"}},
		{"CELNotBoolean", "version: 1\nrules:\n  - name: a\n    when: action.estimated_cost + 1.0\n    tier: auto\n", []string{"must be a boolean"}},
		{"UnknownTier", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: sometimes\n", []string{`unknown tier "sometimes"`}},
		{"MissingTier", "version: 1\nrules:\n  - name: a\n    when: 'true'\n", []string{"tier is required"}},
		{"DuplicateName", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: auto\n  - name: a\n    when: 'true'\n    tier: auto\n", []string{`line 6: rule "a": duplicate rule name`}},
		{"AutoWithApprovals", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: auto\n    approvals: 2\n", []string{"an auto rule cannot have approvals"}},
		{"ApproveOnTimeoutExplicit", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: explicit\n    deadline: 1h\n    on_timeout: approve\n", []string{"only allowed for batched"}},
		{"OnTimeoutWithoutDeadline", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: explicit\n    on_timeout: reject\n", []string{"needs a deadline"}},
		{"BadDeadline", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: explicit\n    deadline: soon\n", []string{`"soon" is not a positive duration`}},
		{"UnknownRole", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: explicit\n    roles: [boss]\n", []string{`unknown role "boss"`}},
		{"ViewerCannotDecide", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: explicit\n    roles: [viewer]\n", []string{`line 3: rule "a": role "viewer" cannot decide`}},
		{"ViewerCannotBeEscalatedTo", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: explicit\n    deadline: 1h\n    on_timeout: escalate\n    escalate_to: [viewer]\n", []string{`role "viewer" cannot decide`}},
		{"BatchOnExplicit", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: explicit\n    batch: {max_size: 3}\n", []string{"batch only applies"}},
		{"BadGroupKey", "version: 1\nrules:\n  - name: a\n    when: 'true'\n    tier: batched\n    batch: {group_by: [colour]}\n", []string{`unknown key "colour"`}},
		{"NoName", "version: 1\nrules:\n  - when: 'true'\n    tier: auto\n", []string{"has no name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]byte(tc.src))
			require.Error(t, err)
			var le *LoadError
			require.ErrorAs(t, err, &le)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func FuzzLoadEvaluate(f *testing.F) {
	f.Add(string(Example), "payment.refund", 600.0)
	f.Add("version: 1\nrules:\n  - name: a\n    when: action.params.x / 0 == 1\n    tier: auto\n", "x", 1.0)
	f.Add("version: 1\nrules:\n  - name: a\n    when: size(action.params.fields) > 2\n    tier: batched\n", "crm.update", 0.0)
	f.Fuzz(func(t *testing.T, src, kind string, amount float64) {
		p, err := Load([]byte(src))
		if err != nil {
			return
		}
		d, err := Evaluate(p, Input{Action: Action{Kind: kind, Params: map[string]any{"amount": amount, "x": kind}}})
		if err != nil {
			t.Fatalf("evaluate: %v", err)
		}
		if d.Tier != vocab.TierAuto && d.Tier != vocab.TierBatched && d.Tier != vocab.TierExplicit {
			t.Fatalf("tier %q", d.Tier)
		}
	})
}

// twentyRules is a 20-rule policy in the shape real ones take: most rules test
// the kind first, a few read params, risk and cost.
func twentyRules() string {
	var b strings.Builder
	b.WriteString("version: 1\nrules:\n")
	for i := range 18 {
		fmt.Fprintf(&b, "  - name: rule-%d\n    when: action.kind == \"kind.%d\" && action.risk != \"high\" && double(action.params.amount) > %d.0\n    tier: %s\n",
			i, i, i*10, []string{"auto", "batched", "explicit"}[i%3])
	}
	b.WriteString("  - name: costly\n    when: action.estimated_cost > 1000.0 && run.workflow == \"payments\"\n    tier: explicit\n")
	b.WriteString("  - name: fallback\n    when: action.risk == \"low\"\n    tier: batched\n")
	return b.String()
}

func TestTwentyRulesLoads(t *testing.T) {
	p := mustLoad(t, twentyRules())
	require.Len(t, p.Rules, 20)
}

// BenchmarkEvaluate20Rules measures a 20-rule policy where the action matches
// the last rule, so every rule is evaluated: the worst case.
func BenchmarkEvaluate20Rules(b *testing.B) {
	p := mustLoad(b, twentyRules())
	in := Input{Action: Action{Kind: "crm.update", Risk: "low", Params: map[string]any{"amount": 50.0}},
		Run: Run{Workflow: "lead_enrichment"}, Now: time.Now()}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		d, _ := Evaluate(p, in)
		if d.Rule != "fallback" {
			b.Fatal(d.Rule)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "evals/s")
}

// A condition that cannot be evaluated must not let whoever shapes the input
// (a model padding a field, an editor removing one) pick its rule's looser
// requirements over a stricter rule further down: the rules after it are
// still tried, and the answer keeps the strictest of them.
func TestFailedConditionKeepsLaterRulesStrictness(t *testing.T) {
	p := mustLoad(t, `version: 1
rules:
  - name: flagged-text
    when: action.summary.contains("URGENT") || action.params.note.contains("URGENT")
    tier: explicit
    deadline: 1h
    on_timeout: reject
  - name: big-refund
    when: action.kind == "payment.refund" && double(action.params.amount) > 500.0
    tier: explicit
    approvals: 2
    roles: [approver]
  - name: refund
    when: action.kind == "payment.refund"
    tier: explicit
    roles: [reviewer]
  - name: tags
    when: action.kind == "crm.tag"
    tier: batched
    deadline: 1h
    on_timeout: approve
    batch: {max_size: 10}
`)
	refund := func(summary string, params map[string]any) Decision {
		t.Helper()
		d, err := Evaluate(p, Input{Action: Action{Kind: "payment.refund", Summary: summary, Params: params}})
		require.NoError(t, err)
		return d
	}

	t.Run("ControlMatchesTheStricterRule", func(t *testing.T) {
		d := refund("refund", map[string]any{"amount": 250000.0, "note": "x"})
		require.Equal(t, "big-refund", d.Rule)
		require.False(t, d.Uncertain)
	})
	t.Run("CostLimitOnAnEarlierRule", func(t *testing.T) {
		// The reviewer's exploit: a summary long enough that the first
		// condition runs over its cost limit.
		d := refund(strings.Repeat("a", 250_000), map[string]any{"amount": 250000.0, "note": "x"})
		require.True(t, d.Uncertain)
		require.Equal(t, vocab.TierExplicit, d.Tier)
		require.Equal(t, "flagged-text", d.Rule, "the request names the rule that could not be judged")
		require.Equal(t, 2, d.Approvals, "big-refund's two approvers still apply")
		require.Equal(t, []vocab.Role{vocab.RoleApprover}, d.Roles)
		require.Contains(t, d.Reason, `rule "flagged-text" could not be evaluated`)
		require.Contains(t, d.Reason, `"big-refund"`)
	})
	t.Run("MissingFieldOnAnEarlierRule", func(t *testing.T) {
		d := refund("refund", map[string]any{"amount": 250000.0}) // no note
		require.True(t, d.Uncertain)
		require.Equal(t, 2, d.Approvals)
		require.Equal(t, []vocab.Role{vocab.RoleApprover}, d.Roles)
	})
	t.Run("RolesNarrowToWhatEveryRuleAllows", func(t *testing.T) {
		// big-refund fails (amount is a string), refund matches: approver
		// and reviewer have no role in common, so only admins decide.
		d := refund("refund", map[string]any{"amount": "lots", "note": "x"})
		require.True(t, d.Uncertain)
		require.Equal(t, "big-refund", d.Rule)
		require.Equal(t, 2, d.Approvals)
		require.Equal(t, []vocab.Role{vocab.RoleAdmin}, d.Roles)
	})
	t.Run("NeverApprovedByItsDeadline", func(t *testing.T) {
		d, err := Evaluate(p, Input{Action: Action{Kind: "crm.tag", Summary: "tag", Params: map[string]any{}}})
		require.NoError(t, err)
		require.True(t, d.Uncertain, "flagged-text reads a note the action lacks")
		require.Equal(t, vocab.TierExplicit, d.Tier, "not batched")
		require.Nil(t, d.Batch)
		require.Equal(t, TimeoutEscalate, d.OnTimeout, "an explicit request is not approved by its deadline")
	})
}
