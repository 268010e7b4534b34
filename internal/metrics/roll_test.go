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
