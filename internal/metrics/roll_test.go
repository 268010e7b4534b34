package metrics_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/vocab"
)

func total(t *testing.T, db store.DBTX, k store.MetricKey) store.MetricValue {
	t.Helper()
	rows, err := store.MetricTotals(context.Background(), db)
	require.NoError(t, err)
	for _, r := range rows {
		if r.MetricKey == k {
			return r.MetricValue
		}
	}
	return store.MetricValue{}
}

// TestRollerCountsOnce: rollers racing over more than a batch of audit
// events and finished runs count each exactly once, and a later pass adds
// nothing.
func TestRollerCountsOnce(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	const events = 2500 // over one pass's 2,000 chain positions
	for i := range events {
		_, err := audit.Append(ctx, pool, audit.Event{Actor: "t", Subject: audit.RunSubject("00000000-0000-0000-0000-000000000000"),
			Details: audit.RunStarted{Workflow: fmt.Sprint("w", i%2), BusinessKey: fmt.Sprint(i)}})
		require.NoError(t, err)
		if i%7 == 0 { // events the metrics skip, between the counted ones
			_, err := audit.Append(ctx, pool, audit.Event{Actor: "t", Subject: audit.AddressSubject("127.0.0.1"), Details: audit.AuthLogin{IP: "127.0.0.1"}})
			require.NoError(t, err)
		}
	}
	_, err := audit.Chain(ctx, pool)
	require.NoError(t, err)
	const runs = 30
	for i := range runs {
		run := factory.Run(ctx, t, pool, &factory.RunOpts{Workflow: ptr("finisher")})
		status := vocab.RunCompleted
		if i%3 == 0 {
			status = vocab.RunFailed
		}
		require.NoError(t, store.RunSetStatus(ctx, pool, run.ID, []string{string(vocab.RunQueued)}, string(status)))
	}

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			r := &metrics.Roller{Pool: pool}
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				b, err := store.MetricBacklog(ctx, pool)
				if err != nil || (b.AuditBehind == 0 && b.RunsQueued == 0) {
					return
				}
				if _, err := r.RollAll(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	started := total(t, pool, store.MetricKey{Metric: store.MetricRunStarted, Workflow: "w0"}).Count +
		total(t, pool, store.MetricKey{Metric: store.MetricRunStarted, Workflow: "w1"}).Count
	require.EqualValues(t, events, started)
	require.EqualValues(t, events/2, total(t, pool, store.MetricKey{Metric: store.MetricRunStarted, Workflow: "w0"}).Count)
	require.EqualValues(t, 20, total(t, pool, store.MetricKey{Metric: store.MetricRunFinished, Workflow: "finisher", Label: "completed"}).Count)
	require.EqualValues(t, 10, total(t, pool, store.MetricKey{Metric: store.MetricRunFinished, Workflow: "finisher", Label: "failed"}).Count)

	again, err := (&metrics.Roller{Pool: pool}).RollAll(ctx)
	require.NoError(t, err)
	require.Zero(t, again.Events+again.Runs)
	b, err := store.MetricBacklog(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, b.AuditBehind)
	require.Zero(t, b.RunsQueued)

	hours, err := store.MetricHours(ctx, pool, store.MetricRange{Metrics: []string{store.MetricRunStarted},
		Since: time.Now().Add(-2 * time.Hour), Until: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	var inHours int64
	for _, h := range hours {
		inHours += h.Count
	}
	require.EqualValues(t, events, inHours, "the hourly rows add up to the totals")
}

// TestRollerDeadlinesAndDecisions: decisions by the policy at a deadline
// count as deadline outcomes, people's as decision times, escalations as
// deadline outcomes too.
func TestRollerDeadlinesAndDecisions(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	f := audit.Facets{Workflow: "w", Rule: "r", Tier: vocab.TierExplicit}
	for _, e := range []audit.Event{
		{Actor: "policy:r", Details: audit.DecisionRecorded{Facets: withVerdict(f, vocab.VerdictReject), SecondsToDecision: 3600}},
		{Actor: "policy:r", Details: audit.DecisionRecorded{Facets: withVerdict(f, vocab.VerdictApprove), SecondsToDecision: 3600}},
		{Actor: "policy:r", Details: audit.RequestEscalated{Facets: f}},
		{Actor: "ann@example.com", Details: audit.DecisionRecorded{Facets: withVerdict(f, vocab.VerdictApprove), SecondsToDecision: 42}},
		{Actor: "policy:r", Details: audit.DecisionAuto{Facets: withVerdict(f, vocab.VerdictApprove)}},
		{Actor: "t", Details: audit.ApprovalRequested{Facets: f}},
	} {
		e.Subject = audit.RequestSubject("00000000-0000-0000-0000-000000000000")
		_, err := audit.Append(ctx, pool, e)
		require.NoError(t, err)
	}
	_, err := audit.Chain(ctx, pool)
	require.NoError(t, err)
	got, err := (&metrics.Roller{Pool: pool}).RollAll(ctx)
	require.NoError(t, err)
	require.Equal(t, 6, got.Events)
	k := store.MetricKey{Workflow: "w", Rule: "r", Tier: "explicit"}
	for label, n := range map[string]int64{metrics.DeadlineApproved: 1, metrics.DeadlineRejected: 1, metrics.DeadlineEscalated: 1} {
		k.Metric, k.Label = store.MetricDeadline, label
		require.EqualValues(t, n, total(t, pool, k).Count, label)
	}
	k.Metric, k.Label = store.MetricDecisionSeconds, "approve"
	d := total(t, pool, k)
	require.EqualValues(t, 1, d.Count, "only the person's decision is timed")
	require.InDelta(t, 42, d.Sum, 1e-9)
	k.Metric, k.Label = store.MetricApproval, "auto"
	require.EqualValues(t, 1, total(t, pool, k).Count)
	k.Label = "human"
	require.EqualValues(t, 1, total(t, pool, k).Count)
}

func withVerdict(f audit.Facets, v vocab.Verdict) audit.Facets { f.Verdict = v; return f }

func ptr[T any](v T) *T { return &v }

// rolled returns what the rollups hold for k: its total, and the sums of
// its hourly rows and of its daily rows, so that a test sees all three.
func rolled(t *testing.T, db store.DBTX, k store.MetricKey) (totals, hours, days int64) {
	t.Helper()
	ctx := context.Background()
	totals = total(t, db, k).Count
	since, until := time.Now().AddDate(0, 0, -2), time.Now().Add(time.Hour)
	rows, err := store.MetricHours(ctx, db, store.MetricRange{Metrics: []string{k.Metric}, Since: since, Until: until})
	require.NoError(t, err)
	for _, r := range rows {
		if r.MetricKey == k {
			hours += r.Count
		}
	}
	pts, err := store.MetricSeries(ctx, db, store.SeriesQuery{Metric: k.Metric, Since: store.DayOf(since), Until: store.DayOf(until).AddDate(0, 0, 1),
		Step: 24 * time.Hour, By: store.ByWorkflow, Workflow: k.Workflow, Label: k.Label})
	require.NoError(t, err)
	for _, p := range pts {
		days += p.Count
	}
	return totals, hours, days
}

// TestRollerDiesHalfWayThenReruns: a pass that fails after it has added
// some keys (to their hours, days and totals) leaves nothing behind and its
// cursor where it was; the rerun counts every fact once in all three
// tables, and a pass run again adds nothing.
func TestRollerDiesHalfWayThenReruns(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	// The pass writes its keys in order: "a"'s rows first, then it dies
	// on "zz-boom"'s day, after "a" was added to its hour, day and total.
	for i := range 40 {
		wf := "a"
		if i%10 == 9 {
			wf = "zz-boom"
		}
		_, err := audit.Append(ctx, pool, audit.Event{Actor: "t", Subject: audit.RunSubject("00000000-0000-0000-0000-000000000000"),
			Details: audit.RunStarted{Workflow: wf, BusinessKey: fmt.Sprint(i)}})
		require.NoError(t, err)
	}
	_, err := audit.Chain(ctx, pool)
	require.NoError(t, err)
	for range 5 {
		run := factory.Run(ctx, t, pool, &factory.RunOpts{Workflow: ptr("a")})
		require.NoError(t, store.RunSetStatus(ctx, pool, run.ID, []string{string(vocab.RunQueued)}, string(vocab.RunCompleted)))
	}
	_, err = pool.Exec(ctx, `
CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$;
CREATE TRIGGER boom BEFORE INSERT OR UPDATE ON metric_days FOR EACH ROW WHEN (NEW.workflow = 'zz-boom') EXECUTE FUNCTION boom();`)
	require.NoError(t, err)

	r := &metrics.Roller{Pool: pool}
	_, err = r.Roll(ctx)
	require.ErrorContains(t, err, "boom")
	started := store.MetricKey{Metric: store.MetricRunStarted, Workflow: "a"}
	finished := store.MetricKey{Metric: store.MetricRunFinished, Workflow: "a", Label: "completed"}
	for _, k := range []store.MetricKey{started, finished} {
		tot, hours, days := rolled(t, pool, k)
		require.Zero(t, tot+hours+days, "%s: the dead pass left nothing", k.Metric)
	}
	b, err := store.MetricBacklog(ctx, pool)
	require.NoError(t, err)
	require.Positive(t, b.AuditBehind, "the cursor did not move")
	require.EqualValues(t, 5, b.RunsQueued, "the finished runs are back in the queue")

	_, err = pool.Exec(ctx, `DROP TRIGGER boom ON metric_days`)
	require.NoError(t, err)
	for range 2 { // the rerun, then a pass run again
		_, err = r.RollAll(ctx)
		require.NoError(t, err)
		for k, want := range map[store.MetricKey]int64{started: 36, finished: 5, {Metric: store.MetricRunStarted, Workflow: "zz-boom"}: 4} {
			tot, hours, days := rolled(t, pool, k)
			require.Equal(t, []int64{want, want, want}, []int64{tot, hours, days}, "%s %s: total, hours, days", k.Metric, k.Workflow)
		}
	}
}
