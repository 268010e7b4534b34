package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/vocab"
)

// loadErr loads src and returns its problems, one a line.
func loadErr(t *testing.T, src string) string {
	t.Helper()
	_, err := Load([]byte(src))
	var le *LoadError
	require.ErrorAs(t, err, &le)
	return err.Error()
}

func TestLoadRefusesNumbersThatAreNotWhole(t *testing.T) {
	rule := func(field string) string {
		return "version: 1\nrules:\n  - name: tags\n    when: 'true'\n    tier: batched\n    " + field + "\n"
	}
	for _, tc := range []struct{ name, src, want string }{
		{"ApprovalsHalf", rule("approvals: 0.5"), `line 6: rule "tags": approvals must be a whole number from 1 to 10, got 0.5`},
		{"ApprovalsTwoPointNine", rule("approvals: 2.9"), `line 6: rule "tags": approvals must be a whole number from 1 to 10, got 2.9`},
		{"ApprovalsQuoted", rule(`approvals: "3"`), `line 6: rule "tags": approvals must be a whole number from 1 to 10, got "3"`},
		{"ApprovalsBool", rule("approvals: true"), `line 6: rule "tags": approvals must be a whole number from 1 to 10, got true`},
		{"ApprovalsList", rule("approvals: [2]"), `line 6: rule "tags": approvals must be a whole number from 1 to 10, got a seq`},
		{"ApprovalsNull", rule("approvals: ~"), `approvals must be a whole number from 1 to 10, got ~`},
		{"ApprovalsZero", rule("approvals: 0"), `line 6: rule "tags": approvals must be a whole number from 1 to 10, got 0`},
		{"ApprovalsEleven", rule("approvals: 11"), `approvals must be a whole number from 1 to 10, got 11`},
		{"ApprovalsHuge", rule("approvals: 99999999999999999999"), `got 99999999999999999999`},
		{"MaxSizeHalf", rule("batch: {max_size: 0.5}"), `line 6: rule "tags": batch.max_size must be a whole number from 1 to 5000, got 0.5`},
		{"MaxSizeZero", rule("batch:\n      max_size: 0"), `line 7: rule "tags": batch.max_size must be a whole number from 1 to 5000, got 0`},
		{"MaxSizeTooLarge", rule("batch: {max_size: 5001}"), `got 5001`},
		{"MaxSizeQuoted", rule("batch: {max_size: '7'}"), `batch.max_size must be a whole number from 1 to 5000, got "7"`},
		{"VersionFloat", "version: 1.5\nrules: []\n", `line 1: version must be 1, got 1.5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Contains(t, loadErr(t, tc.src), tc.want)
		})
	}

	t.Run("WholeNumbersInAnyNotationLoad", func(t *testing.T) {
		p := mustLoad(t, rule("approvals: 0x2\n    batch: {max_size: 1_000}"))
		require.Equal(t, 2, p.Rules[0].Approvals)
		require.Equal(t, 1000, p.Rules[0].Batch.MaxSize)
	})
}

func TestLoadRefusesApproveOnTimeoutWithManyApprovals(t *testing.T) {
	msg := loadErr(t, `version: 1
rules:
  - name: tags
    when: 'true'
    tier: batched
    approvals: 2
    deadline: 1h
    on_timeout: approve
`)
	require.Contains(t, msg, `line 8: rule "tags": on_timeout: approve cannot be combined with approvals: 2`)
	require.Contains(t, msg, "needs 2 people")

	p := mustLoad(t, "version: 1\nrules:\n  - name: tags\n    when: 'true'\n    tier: batched\n    approvals: 2\n    deadline: 1h\n    on_timeout: reject\n")
	require.Equal(t, 2, p.Rules[0].Approvals, "reject and escalate stay allowed")
}

func TestLoadLimits(t *testing.T) {
	t.Run("DocumentSize", func(t *testing.T) {
		src := "version: 1\nrules: []\n# " + strings.Repeat("x", MaxDocumentBytes) + "\n"
		require.Contains(t, loadErr(t, src), fmt.Sprintf("the document is %d bytes; the limit is %d (256 KiB)", len(src), MaxDocumentBytes))
	})

	t.Run("RuleCount", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("version: 1\nrules:\n")
		for i := range MaxRules + 1 {
			fmt.Fprintf(&b, "  - {name: r%d, when: 'true', tier: auto}\n", i)
		}
		require.Contains(t, loadErr(t, b.String()), "the policy has 501 rules; the limit is 500")
		mustLoad(t, strings.Replace(b.String(), "  - {name: r500, when: 'true', tier: auto}\n", "", 1))
	})

	t.Run("ExpressionLength", func(t *testing.T) {
		// The 98 KB `||` chain of the report.
		chain := strings.Repeat(`action.kind == "x" || `, 98_000/22) + "true"
		msg := loadErr(t, "version: 1\nrules:\n  - name: long\n    tier: auto\n    when: '"+chain+"'\n")
		require.Contains(t, msg, fmt.Sprintf(`line 5: rule "long": when is %d bytes; the limit is 4096`, len(chain)))
	})

	t.Run("EstimatedCost", func(t *testing.T) {
		for _, when := range []string{
			`action.params.l.all(x, action.params.l.all(y, x == y))`,
			`action.params.l.all(x, action.params.l.all(y, action.params.l.all(z, true)))`,
			`[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))`,
		} {
			msg := loadErr(t, "version: 1\nrules:\n  - name: nested\n    tier: auto\n    when: '"+when+"'\n")
			require.Contains(t, msg, `line 5: rule "nested": when: the condition could cost up to`)
			require.Contains(t, msg, "avoid nesting comprehensions")
		}
		p := mustLoad(t, "version: 1\nrules:\n  - name: one\n    tier: auto\n    when: 'action.params.l.exists(x, x == 1)'\n")
		require.True(t, p.Rules[0].cond.tracked, "a comprehension over the action's data is cost-tracked")
		p = mustLoad(t, string(Example))
		for _, r := range p.Rules {
			require.False(t, r.cond.tracked, "rule %s has a fixed cost: no tracking overhead", r.Name)
		}
	})
}

func TestCostLimitStopsEvaluation(t *testing.T) {
	p := mustLoad(t, `version: 1
rules:
  - name: scan
    when: action.params.items.exists(x, x == "needle")
    tier: auto
`)
	items := make([]any, 5_000_000)
	for i := range items {
		items[i] = "hay"
	}
	in := Input{Action: Action{Kind: "x", Params: map[string]any{"items": items}}}

	t.Run("LiveFallsBackToExplicit", func(t *testing.T) {
		start := time.Now()
		d, err := Evaluate(p, in)
		require.Less(t, time.Since(start), raceSlowdown*2*time.Second)
		require.NoError(t, err)
		require.Equal(t, vocab.TierExplicit, d.Tier, "never auto")
		require.Equal(t, "scan", d.Rule)
		require.Contains(t, d.Reason, "cost limit exceeded")
	})

	t.Run("ContextEvaluationReportsIt", func(t *testing.T) {
		d, err := EvaluateContext(context.Background(), p, in)
		require.ErrorIs(t, err, ErrCostLimit)
		require.Contains(t, err.Error(), `rule "scan"`)
		require.Equal(t, vocab.TierExplicit, d.Tier)
	})

	t.Run("SmallDataPasses", func(t *testing.T) {
		d, err := EvaluateContext(context.Background(), p, Input{Action: Action{Params: map[string]any{"items": []any{"hay", "needle"}}}})
		require.NoError(t, err)
		require.Equal(t, vocab.TierAuto, d.Tier)
	})

	t.Run("RulesAddUp", func(t *testing.T) {
		// Each rule stays under CostLimit; together they pass EvaluationCostLimit.
		var b strings.Builder
		b.WriteString("version: 1\nrules:\n")
		for i := range 30 {
			fmt.Fprintf(&b, "  - {name: r%d, when: 'action.params.items.exists(x, x == \"needle\")', tier: auto}\n", i)
		}
		p := mustLoad(t, b.String())
		in := Input{Action: Action{Params: map[string]any{"items": items[:CostLimit/8]}}}
		start := time.Now()
		d, err := EvaluateContext(context.Background(), p, in)
		require.Less(t, time.Since(start), raceSlowdown*2*time.Second)
		require.ErrorIs(t, err, ErrCostLimit)
		require.Equal(t, vocab.TierExplicit, d.Tier)
		require.Contains(t, d.Reason, "together cost more than")
	})
}

func TestEvaluateContextStopsWhenCancelled(t *testing.T) {
	p := mustLoad(t, "version: 1\nrules:\n  - {name: scan, when: 'action.params.items.exists(x, x == 1)', tier: auto}\n")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d, err := EvaluateContext(ctx, p, Input{Action: Action{Params: map[string]any{"items": make([]any, 1000)}}})
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, errors.Is(err, ErrCostLimit))
	require.Equal(t, vocab.TierExplicit, d.Tier)
}
