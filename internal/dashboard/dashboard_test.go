package dashboard_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/chart"
	"github.com/countersign/countersign/internal/dashboard"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/vocab"
)

func TestQuantileInterpolatesInsideTheBucket(t *testing.T) {
	bounds := []float64{1, 5, 10}
	// 10 facts: 2 in (0,1], 6 in (1,5], 2 in (5,10].
	counts := []int64{2, 6, 2, 0}
	require.InDelta(t, 1+4*3.0/6, dashboard.Quantile(bounds, counts, 0.5), 1e-9) // rank 5: 3rd of 6 in (1,5]
	require.InDelta(t, 7.5, dashboard.Quantile(bounds, counts, 0.9), 1e-9)       // rank 9: 1st of 2 in (5,10]
	require.Equal(t, 10.0, dashboard.Quantile(bounds, []int64{0, 0, 0, 3}, 0.5), "above every bound: the last bound")
	require.True(t, math.IsNaN(dashboard.Quantile(bounds, []int64{0, 0, 0, 0}, 0.5)))
}

func TestParseWindow(t *testing.T) {
	for in, want := range map[string]dashboard.Window{"": dashboard.Day, "day": dashboard.Day, "week": dashboard.Week, "month": dashboard.Month} {
		w, err := dashboard.ParseWindow(in)
		require.NoError(t, err)
		require.Equal(t, want, w)
	}
	_, err := dashboard.ParseWindow("year")
	require.Error(t, err)
}

// TestBuildChartsFromRollups puts known facts in the hourly rollups and
// checks each chart's series, bucketing, filters and gauges.
func TestBuildChartsFromRollups(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 20, 15, 30, 0, 0, time.UTC)
	add := func(at time.Time, key store.MetricKey, v store.MetricValue) {
		t.Helper()
		require.NoError(t, store.MetricAdd(ctx, pool, at, key, v))
	}
	count := func(n int64) store.MetricValue { return store.MetricValue{Count: n} }
	h := func(ago time.Duration) time.Time { return now.Add(-ago) }

	add(h(2*time.Hour), store.MetricKey{Metric: store.MetricRunFinished, Workflow: "refund", Label: "completed"}, count(3))
	add(h(2*time.Hour), store.MetricKey{Metric: store.MetricRunFinished, Workflow: "refund", Label: "failed"}, count(1))
	add(h(0), store.MetricKey{Metric: store.MetricRunFinished, Workflow: "triage", Label: "completed"}, count(5))
	// Outside the day, inside the week.
	add(h(50*time.Hour), store.MetricKey{Metric: store.MetricRunFinished, Workflow: "refund", Label: "completed"}, count(7))
	// Intervention: big-refund asks a person 1 time in 4; small-refund never.
	add(h(time.Hour), store.MetricKey{Metric: store.MetricApproval, Workflow: "refund", Rule: "big-refund", Tier: "explicit", Label: "human"}, count(1))
	add(h(time.Hour), store.MetricKey{Metric: store.MetricApproval, Workflow: "refund", Rule: "big-refund", Tier: "explicit", Label: "auto"}, count(3))
	add(h(time.Hour), store.MetricKey{Metric: store.MetricApproval, Workflow: "refund", Rule: "small-refund", Tier: "auto", Label: "auto"}, count(8))
	var dec store.MetricValue
	for _, s := range []float64{10, 20, 40, 50} { // (5,15], (15,30], (30,60], (30,60]
		dec.Observe(store.MetricDecisionSeconds, s)
	}
	add(h(time.Hour), store.MetricKey{Metric: store.MetricDecisionSeconds, Workflow: "refund", Rule: "big-refund", Tier: "explicit", Label: "approve"}, dec)
	add(h(time.Hour), store.MetricKey{Metric: store.MetricModelTokens, Workflow: "refund", Label: "gpt-x"}, store.MetricValue{Count: 2, Sum: 1500})

	v, err := dashboard.Build(ctx, pool, dashboard.Filter{Window: dashboard.Day}, now)
	require.NoError(t, err)
	require.Equal(t, []string{"refund", "triage"}, v.Workflows)
	require.Equal(t, []string{"big-refund", "small-refund"}, v.Rules)
	charts := map[string]chart.Chart{}
	for _, c := range v.Charts {
		require.Len(t, c.Labels, 24, c.ID)
		charts[c.ID] = c
	}
	series := func(c chart.Chart, name string) []float64 {
		for _, s := range c.Series {
			if s.Name == name {
				return s.Values
			}
		}
		t.Fatalf("chart %s has no series %q: %+v", c.ID, name, c.Series)
		return nil
	}
	// The day's last bucket is the current hour; two hours ago is index 21.
	runs := charts["runs"]
	require.Equal(t, "completed", runs.Series[0].Name, "largest series first")
	require.Equal(t, 3.0, series(runs, "completed")[21])
	require.Equal(t, 5.0, series(runs, "completed")[23])
	require.Equal(t, 1.0, series(runs, "failed")[21])
	require.Equal(t, 8.0, sum(series(runs, "completed")), "the run 50 hours ago is not in the day")

	inter := charts["intervention"]
	require.InDelta(t, 25, series(inter, "big-refund")[22], 1e-9)
	require.InDelta(t, 0, series(inter, "small-refund")[22], 1e-9)
	require.True(t, math.IsNaN(series(inter, "big-refund")[0]), "no actions: no rate")

	dt := charts["decision-time"]
	require.Contains(t, []string{"s"}, dt.Unit)
	require.InDelta(t, 30, series(dt, "explicit median")[22], 1e-9) // rank 2 of 4: end of (15,30]
	require.InDelta(t, 30+30*1.8/2, series(dt, "explicit p95")[22], 1e-9)

	require.Equal(t, 1500.0, series(charts["tokens"], "gpt-x")[22])

	// The day ends now, not at the last or the next whole hour.
	require.Equal(t, now, v.Until)
	require.Equal(t, now.Truncate(time.Hour).Add(-23*time.Hour), v.Since)

	// The week: seven days, today's so far the last, holding the older run
	// too (its whole days read from the daily rollups, today from the hours).
	week, err := dashboard.Build(ctx, pool, dashboard.Filter{Window: dashboard.Week}, now)
	require.NoError(t, err)
	require.Equal(t, now, week.Until)
	require.Equal(t, time.Date(2026, 11, 14, 0, 0, 0, 0, time.UTC), week.Since)
	for _, c := range week.Charts {
		switch c.ID {
		case "runs":
			require.Len(t, c.Labels, 7)
			require.Equal(t, "Fri 20", c.Labels[6])
			require.Equal(t, []float64{0, 0, 0, 0, 7, 0, 8}, series(c, "completed"))
		case "decision-time":
			require.InDelta(t, 30, series(c, "explicit median")[6], 1e-9)
		}
	}

	// One workflow, one rule: measures without a rule say they show every rule.
	one, err := dashboard.Build(ctx, pool, dashboard.Filter{Window: dashboard.Day, Workflow: "triage", Rule: "big-refund"}, now)
	require.NoError(t, err)
	for _, c := range one.Charts {
		switch c.ID {
		case "runs":
			require.Equal(t, 5.0, sum(series(c, "completed")))
			require.True(t, one.RuleWide["runs"])
		case "intervention":
			require.False(t, one.RuleWide["intervention"])
			require.Empty(t, c.Series, "triage has no approvals")
		}
	}
	require.NotEmpty(t, v.Gauges)
	require.Equal(t, "waiting", v.Gauges[0].ID)
}

func sum(vs []float64) float64 {
	t := 0.0
	for _, v := range vs {
		if !math.IsNaN(v) {
			t += v
		}
	}
	return t
}

// TestInterventionOfTheOtherRules: past six rules the quietest share one
// line, whose rate comes from their summed actions and asks.
func TestInterventionOfTheOtherRules(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 20, 15, 30, 0, 0, time.UTC)
	add := func(rule, label string, n int64) {
		t.Helper()
		require.NoError(t, store.MetricAdd(ctx, pool, now, store.MetricKey{Metric: store.MetricApproval, Workflow: "w", Rule: rule,
			Tier: "explicit", Label: label}, store.MetricValue{Count: n}))
	}
	// Five busy rules never ask; r6 and r7 (the quietest) always do.
	for i := 1; i <= 5; i++ {
		add(fmt.Sprintf("r%d", i), "auto", int64(100-i))
	}
	add("r6", "human", 3)
	add("r7", "human", 2)
	v, err := dashboard.Build(ctx, pool, dashboard.Filter{Window: dashboard.Day}, now)
	require.NoError(t, err)
	for _, c := range v.Charts {
		if c.ID != "intervention" {
			continue
		}
		require.Len(t, c.Series, 6)
		last := c.Series[5]
		require.Equal(t, "other", last.Name)
		require.InDelta(t, 100, last.Values[23], 1e-9, "r6 and r7 always asked a person")
		require.InDelta(t, 0, c.Series[0].Values[23], 1e-9)
	}
}

// TestLegendsSayWords: the legends name run outcomes and verdicts in words,
// not as the machine words the rollups keep them under.
func TestLegendsSayWords(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 20, 15, 30, 0, 0, time.UTC)
	at := now.Add(-time.Hour)
	for _, status := range []string{"completed", "compensation_failed"} {
		require.NoError(t, store.MetricAdd(ctx, pool, at, store.MetricKey{Metric: store.MetricRunFinished, Workflow: "refund", Label: status},
			store.MetricValue{Count: 1}))
	}
	for _, verdict := range vocab.Verdicts() {
		var dec store.MetricValue
		dec.Observe(store.MetricDecisionSeconds, 10)
		require.NoError(t, store.MetricAdd(ctx, pool, at, store.MetricKey{Metric: store.MetricDecisionSeconds, Workflow: "refund",
			Rule: "refund", Tier: "explicit", Label: string(verdict)}, dec))
	}

	v, err := dashboard.Build(ctx, pool, dashboard.Filter{Window: dashboard.Day}, now)
	require.NoError(t, err)
	names := map[string][]string{}
	for _, c := range v.Charts {
		for _, s := range c.Series {
			names[c.ID] = append(names[c.ID], s.Name)
		}
	}
	require.ElementsMatch(t, []string{"completed", "compensation failed"}, names["runs"])
	require.ElementsMatch(t, []string{"approved", "rejected", "approved with edits", "changes requested"}, names["decisions"])
}

// TestDashboardDaysMatchHours: a series read from the daily rollups and the
// edge hours says exactly what the hourly rows alone say, for counts, sums
// and histograms, over a window whose edges are in the middle of days and
// of an hour; and its whole days do come from metric_days.
func TestDashboardDaysMatchHours(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	day0 := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []store.MetricKey{
		{Metric: store.MetricDecisionSeconds, Workflow: "refund", Rule: "big", Tier: "explicit", Label: "approve"},
		{Metric: store.MetricDecisionSeconds, Workflow: "refund", Rule: "small", Tier: "batched", Label: "reject"},
		{Metric: store.MetricDecisionSeconds, Workflow: "triage", Rule: "big", Tier: "explicit", Label: "approve"},
	}
	// Facts at random minutes over six days, several per hour and key, each
	// added as the roller adds them (store.MetricAdd: its hour, day, total).
	for range 600 {
		at := day0.Add(time.Duration(rng.IntN(6*24*60)) * time.Minute)
		var v store.MetricValue
		for range 1 + rng.IntN(3) {
			v.Observe(store.MetricDecisionSeconds, float64(rng.IntN(20000)))
		}
		require.NoError(t, store.MetricAdd(ctx, pool, at, keys[rng.IntN(len(keys))], v))
	}
	since := day0.Add(31 * time.Hour)                                 // day 1, 07:00
	until := day0.Add(4*24*time.Hour + 13*time.Hour + 20*time.Minute) // day 4, 13:20 ("now")
	hours, err := store.MetricHours(ctx, pool, store.MetricRange{Metrics: []string{store.MetricDecisionSeconds}, Since: since, Until: until})
	require.NoError(t, err)
	require.NotEmpty(t, hours)

	type cell struct {
		bucket time.Time
		group  string
	}
	for _, tc := range []struct {
		name string
		q    store.SeriesQuery
		grp  func(store.MetricKey) string
		keep func(store.MetricKey) bool
	}{
		{"ByTier", store.SeriesQuery{By: store.ByTier}, func(k store.MetricKey) string { return k.Tier }, func(store.MetricKey) bool { return true }},
		{"ByRuleOneWorkflow", store.SeriesQuery{By: store.ByRule, Workflow: "refund"}, func(k store.MetricKey) string { return k.Rule },
			func(k store.MetricKey) bool { return k.Workflow == "refund" }},
		{"ByWorkflowOneRule", store.SeriesQuery{By: store.ByWorkflow, Rule: "big"}, func(k store.MetricKey) string { return k.Workflow },
			func(k store.MetricKey) bool { return k.Rule == "big" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.Metric, q.Since, q.Until, q.Origin, q.Step = store.MetricDecisionSeconds, since, until, day0, 24*time.Hour
			// The hourly answer, summed here.
			want := map[cell]*store.MetricValue{}
			for _, h := range hours {
				if !tc.keep(h.MetricKey) {
					continue
				}
				c := cell{store.DayOf(h.Hour), tc.grp(h.MetricKey)}
				if want[c] == nil {
					want[c] = &store.MetricValue{}
				}
				want[c].Add(h.MetricValue)
			}
			check := func(t *testing.T) {
				pts, err := store.MetricSeries(ctx, pool, q)
				require.NoError(t, err)
				hist, err := store.MetricHistogramSeries(ctx, pool, q)
				require.NoError(t, err)
				require.Len(t, pts, len(want))
				require.Len(t, hist, len(want))
				for i, p := range pts {
					w := want[cell{p.Bucket.UTC(), p.Group}]
					require.NotNil(t, w, "%s %s", p.Bucket, p.Group)
					require.Equal(t, w.Count, p.Count, "%s %s", p.Bucket, p.Group)
					require.InDelta(t, w.Sum, p.Sum, 1e-6, "%s %s", p.Bucket, p.Group)
					require.Equal(t, cell{p.Bucket.UTC(), p.Group}, cell{hist[i].Bucket.UTC(), hist[i].Group})
					require.Equal(t, w.Buckets, hist[i].Buckets, "%s %s", p.Bucket, p.Group)
				}
			}
			check(t)
			// The same after the hours of the whole days (days 2 and 3) are
			// gone: those came from metric_days, only the edges from hours.
			tx, err := pool.Begin(ctx)
			require.NoError(t, err)
			t.Cleanup(func() { _ = tx.Rollback(ctx) })
			_, err = tx.Exec(ctx, `DELETE FROM metric_hours WHERE hour >= $1 AND hour < $2`, day0.AddDate(0, 0, 2), day0.AddDate(0, 0, 4))
			require.NoError(t, err)
			pool := tx
			pts, err := store.MetricSeries(ctx, pool, q)
			require.NoError(t, err)
			require.Len(t, pts, len(want))
			for _, p := range pts {
				require.Equal(t, want[cell{p.Bucket.UTC(), p.Group}].Count, p.Count)
			}
			// And the day's window, hourly, reads only hours.
			hq := q
			hq.Since, hq.Step, hq.Origin = until.Truncate(time.Hour).Add(-23*time.Hour), time.Hour, time.Time{}
			hpts, err := store.MetricSeries(ctx, pool, hq)
			require.NoError(t, err)
			var n int64
			for _, p := range hpts {
				n += p.Count
			}
			var wantN int64
			for _, h := range hours {
				if tc.keep(h.MetricKey) && !h.Hour.Before(hq.Since) && h.Hour.Before(day0.AddDate(0, 0, 2)) || tc.keep(h.MetricKey) && !h.Hour.Before(day0.AddDate(0, 0, 4)) && !h.Hour.Before(hq.Since) {
					wantN += h.Count
				}
			}
			require.Equal(t, wantN, n, "the hourly window reads the (remaining) hours, never the days")
		})
	}
}
