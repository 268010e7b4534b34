package dashboard

import (
	"sort"
	"strings"

	"github.com/countersign/countersign/internal/chart"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// panel is one chart of the page: what it reads and how it draws it.
type panel struct {
	id, title string
	byRule    bool // its measure has a rule, so the rule filter applies
	build     func(b *builder) (chart.Chart, error)
	// wordsFunc, when set, turns the machine words its series are named by
	// (a run status, a verdict) into the words the legend shows.
	wordsFunc func(string) string
}

// panels are the dashboard's charts, in page order. Each names the metric it
// reads (docs/OPERATIONS.md describes them).
var panels = []panel{
	{id: "runs", title: "Runs finished, by outcome", build: func(b *builder) (chart.Chart, error) {
		ss, err := b.counts(store.MetricRunFinished, store.ByLabel, "", false, false)
		return chart.Chart{Kind: chart.Stacked, Unit: "runs", Series: ss}, err
	}, wordsFunc: words},
	{id: "intervention", title: "Human intervention: share of actions a person was asked to decide, by rule", byRule: true,
		build: func(b *builder) (chart.Chart, error) {
			all, err := b.groups(store.MetricApproval, store.ByRule, "", true, false)
			if err != nil {
				return chart.Chart{}, err
			}
			human, err := b.groups(store.MetricApproval, store.ByRule, "human", true, false)
			if err != nil {
				return chart.Chart{}, err
			}
			// The busiest rules get a line each; the others one line
			// together, "other", from their summed actions and asks.
			top := topSeries(all, 6)
			named := map[string]bool{}
			for _, s := range top {
				named[s.Name] = true
			}
			asked := map[string][]float64{}
			for rule, vs := range human {
				name := groupName(rule)
				if !named[name] {
					name = "other"
				}
				acc := asked[name]
				if acc == nil {
					acc = make([]float64, len(vs))
					asked[name] = acc
				}
				for k, v := range vs {
					acc[k] += v
				}
			}
			out := make([]chart.Series, 0, len(top))
			for _, s := range top {
				rate := nanSlice(len(s.Values))
				for i, n := range s.Values {
					if n > 0 {
						rate[i] = 100 * at(asked[s.Name], i) / n
					}
				}
				out = append(out, chart.Series{Name: s.Name, Values: rate})
			}
			return chart.Chart{Kind: chart.Lines, Unit: "%", Series: out}, nil
		}},
	{id: "decision-time", title: "Time to decision: median and 95th percentile, by tier", byRule: true,
		build: func(b *builder) (chart.Chart, error) {
			byTier, err := b.quantiles(store.MetricDecisionSeconds, store.ByTier, true, 0.5, 0.95)
			if err != nil {
				return chart.Chart{}, err
			}
			var ss []chart.Series
			for _, tier := range sortedKeys(byTier) {
				ss = append(ss, chart.Series{Name: groupName(tier) + " median", Values: byTier[tier][0]},
					chart.Series{Name: groupName(tier) + " p95", Values: byTier[tier][1]})
			}
			ss, unit := seconds(ss)
			return chart.Chart{Kind: chart.Lines, Unit: unit, Series: ss}, nil
		}},
	{id: "decisions", title: "Decisions by people, by verdict", byRule: true, build: func(b *builder) (chart.Chart, error) {
		ss, err := b.counts(store.MetricDecisionSeconds, store.ByLabel, "", true, false)
		return chart.Chart{Kind: chart.Stacked, Unit: "decisions", Series: ss}, err
	}, wordsFunc: func(v string) string { return vocab.Verdict(v).Label() }},
	{id: "deadlines", title: "Deadlines that passed, by outcome", byRule: true, build: func(b *builder) (chart.Chart, error) {
		ss, err := b.counts(store.MetricDeadline, store.ByLabel, "", true, false)
		return chart.Chart{Kind: chart.Stacked, Unit: "requests", Series: ss}, err
	}},
	{id: "timeouts", title: "Step timeouts, and steps that timed out then succeeded", build: func(b *builder) (chart.Chart, error) {
		return b.lines("steps", []string{"timed out", "recovered"}, store.MetricStepTimeout, store.MetricStepTimeoutRecovered)
	}},
	{id: "retries", title: "Retries, and how the retried steps ended", build: func(b *builder) (chart.Chart, error) {
		return b.lines("attempts / steps", []string{"retries", "succeeded after retrying", "failed after retrying"},
			store.MetricStepRetry, store.MetricStepRetrySucceeded, store.MetricStepRetryFailed)
	}},
	{id: "step-time", title: "Step duration, 95th percentile, by kind", build: func(b *builder) (chart.Chart, error) {
		byKind, err := b.quantiles(store.MetricStepSeconds, store.ByLabel, false, 0.95)
		if err != nil {
			return chart.Chart{}, err
		}
		var ss []chart.Series
		for _, kind := range sortedKeys(byKind) {
			ss = append(ss, chart.Series{Name: groupName(kind), Values: byKind[kind][0]})
		}
		ss, unit := seconds(ss)
		return chart.Chart{Kind: chart.Lines, Unit: unit, Series: ss}, nil
	}},
	{id: "rollbacks", title: "Rollbacks started, by cause", build: func(b *builder) (chart.Chart, error) {
		ss, err := b.counts(store.MetricRollback, store.ByLabel, "", false, false)
		return chart.Chart{Kind: chart.Stacked, Unit: "runs", Series: ss}, err
	}, wordsFunc: words},
	{id: "unusable", title: "Completed runs flagged unusable, by category", build: func(b *builder) (chart.Chart, error) {
		ss, err := b.counts(store.MetricRunUnusable, store.ByLabel, "", false, false)
		return chart.Chart{Kind: chart.Stacked, Unit: "runs", Series: ss}, err
	}},
	{id: "tokens", title: "Model tokens, by model", build: func(b *builder) (chart.Chart, error) {
		ss, err := b.counts(store.MetricModelTokens, store.ByLabel, "", false, true)
		return chart.Chart{Kind: chart.Stacked, Unit: "tokens", Series: ss}, err
	}},
}

// words writes a status or cause as words: "compensation failed".
func words(s string) string { return strings.ReplaceAll(s, "_", " ") }

// lines draws several metrics' counts as one line each.
func (b *builder) lines(unit string, names []string, metrics ...string) (chart.Chart, error) {
	c := chart.Chart{Kind: chart.Lines, Unit: unit}
	for i, m := range metrics {
		pts, err := store.MetricSeries(b.ctx, b.db, b.query(m, store.ByWorkflow, "", false))
		if err != nil {
			return c, err
		}
		vs := make([]float64, b.sp.n)
		for _, p := range pts {
			if j := b.sp.index(p.Bucket); j >= 0 {
				vs[j] += float64(p.Count)
			}
		}
		c.Series = append(c.Series, chart.Series{Name: names[i], Values: vs})
	}
	return c, nil
}

func at(vs []float64, i int) float64 {
	if i < len(vs) {
		return vs[i]
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
