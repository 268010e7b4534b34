package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/vocab"
)

// TestMetricRollups checks the rollup tables' store API: adding to an hour
// and to the total (histograms summed element by element), reading them
// back, pruning hours, and the trigger that queues a run once it is final.
func TestMetricRollups(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()

	t.Run("AddSumsHoursDaysAndTotals", func(t *testing.T) {
		h1 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		h2 := h1.Add(time.Hour)
		key := store.MetricKey{Metric: store.MetricDecisionSeconds, Workflow: "w", Rule: "r", Tier: "explicit", Label: "approve"}
		var a, b store.MetricValue
		a.Observe(key.Metric, 3)   // ≤ 5
		a.Observe(key.Metric, 100) // ≤ 120
		b.Observe(key.Metric, 2)   // ≤ 5
		require.NoError(t, store.MetricAdd(ctx, pool, h1, key, a))
		require.NoError(t, store.MetricAdd(ctx, pool, h1.Add(10*time.Minute), key, b))
		require.NoError(t, store.MetricAdd(ctx, pool, h2, key, b))
		other := store.MetricKey{Metric: store.MetricRunStarted, Workflow: "w"}
		require.NoError(t, store.MetricAdd(ctx, pool, h1, other, store.MetricValue{Count: 4}))

		totals, err := store.MetricTotals(ctx, pool)
		require.NoError(t, err)
		byKey := map[store.MetricKey]store.MetricValue{}
		for _, r := range totals {
			byKey[r.MetricKey] = r.MetricValue
		}
		got := byKey[key]
		require.EqualValues(t, 4, got.Count)
		require.InDelta(t, 107, got.Sum, 1e-9)
		require.Len(t, got.Buckets, len(store.MetricBounds(key.Metric))+1)
		require.EqualValues(t, 3, got.Buckets[1], "three values in (1, 5]")
		require.EqualValues(t, 1, got.Buckets[5], "one value in (60, 120]")
		require.EqualValues(t, 4, byKey[other].Count)
		require.Empty(t, byKey[other].Buckets)

		hours, err := store.MetricHours(ctx, pool, store.MetricRange{Metrics: []string{key.Metric},
			Since: h1.Truncate(time.Hour), Until: h2.Add(time.Hour), Workflow: "w"})
		require.NoError(t, err)
		require.Len(t, hours, 2)
		require.Equal(t, h1.Truncate(time.Hour), hours[0].Hour.UTC())
		require.EqualValues(t, 3, hours[0].Count)
		require.EqualValues(t, 1, hours[1].Count)
		none, err := store.MetricHours(ctx, pool, store.MetricRange{Metrics: []string{key.Metric},
			Since: h1.Truncate(time.Hour), Until: h2.Add(time.Hour), Workflow: "other"})
		require.NoError(t, err)
		require.Empty(t, none)

		n, err := store.MetricHoursPrune(ctx, pool, h2.Truncate(time.Hour))
		require.NoError(t, err)
		require.EqualValues(t, 2, n, "the first hour's two rows")
		totals2, err := store.MetricTotals(ctx, pool)
		require.NoError(t, err)
		require.Equal(t, totals, totals2, "totals outlive pruned hours")
		// The day keeps all its facts while some of its hours remain, and
		// goes with the last of them.
		day := store.DayOf(h1)
		dayCount := func() int64 {
			pts, err := store.MetricSeries(ctx, pool, store.SeriesQuery{Metric: key.Metric, Since: day, Until: day.AddDate(0, 0, 1),
				Step: 24 * time.Hour, By: store.ByWorkflow})
			require.NoError(t, err)
			var n int64
			for _, p := range pts {
				n += p.Count
			}
			return n
		}
		require.EqualValues(t, 4, dayCount())
		n, err = store.MetricHoursPrune(ctx, pool, day.AddDate(0, 0, 1))
		require.NoError(t, err)
		require.EqualValues(t, 1+2, n, "the second hour's row and the day's two")
		require.Zero(t, dayCount())
	})

	t.Run("FinalStatusQueuesTheRunOnce", func(t *testing.T) {
		run := factory.Run(ctx, t, pool, nil)
		require.NoError(t, store.RunSetStatus(ctx, pool, run.ID, []string{string(vocab.RunQueued)}, string(vocab.RunRunning)))
		b, err := store.MetricBacklog(ctx, pool)
		require.NoError(t, err)
		require.Zero(t, b.RunsQueued, "a run under way is not queued")
		require.NoError(t, store.RunSetStatus(ctx, pool, run.ID, []string{string(vocab.RunRunning)}, string(vocab.RunCompleted)))
		b, err = store.MetricBacklog(ctx, pool)
		require.NoError(t, err)
		require.EqualValues(t, 1, b.RunsQueued)

		ids, err := store.MetricRunQueueTake(ctx, pool, 10)
		require.NoError(t, err)
		require.Equal(t, []string{run.ID}, ids)
		runs, err := store.MetricRuns(ctx, pool, ids)
		require.NoError(t, err)
		require.Len(t, runs, 1)
		require.Equal(t, string(vocab.RunCompleted), runs[0].Status)
		again, err := store.MetricRunQueueTake(ctx, pool, 10)
		require.NoError(t, err)
		require.Empty(t, again)
	})
}

// TestMetricGauges: the waiting and queue gauges count up to their cap, name
// every tier and queue asked for, and age the oldest.
func TestMetricGauges(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	for range 3 {
		factory.Request(ctx, t, pool, nil)
	}
	_, err := pool.Exec(ctx, `UPDATE approval_requests SET created_at = now() - interval '1 hour'`)
	require.NoError(t, err)
	tiers := []string{string(vocab.TierExplicit), string(vocab.TierBatched)}
	got, err := store.MetricWaiting(ctx, pool, tiers, 2)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, "explicit", got[0].Tier)
	require.EqualValues(t, 2, got[0].Count, "counted up to the cap")
	require.InDelta(t, time.Hour.Seconds(), got[0].OldestAge.Seconds(), 60)
	require.Zero(t, got[1].Count)
	require.Zero(t, got[1].OldestAge)
	got, err = store.MetricWaiting(ctx, pool, tiers, 100)
	require.NoError(t, err)
	require.EqualValues(t, 3, got[0].Count)

	_, err = pool.Exec(ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, scheduled_at, priority)
		SELECT '{}', 'gauge_test', 1, 'q1', now() - make_interval(mins => g), 1 + g % 4 FROM generate_series(1, 5) g`)
	require.NoError(t, err)
	queues, err := store.MetricQueues(ctx, pool, []string{"q1", "empty"}, 3)
	require.NoError(t, err)
	require.Len(t, queues, 2)
	require.Equal(t, "empty", queues[0].Queue)
	require.Zero(t, queues[0].Available)
	require.Zero(t, queues[0].OldestSeconds)
	require.Equal(t, "q1", queues[1].Queue)
	require.EqualValues(t, 3, queues[1].Available, "counted up to the cap")
	require.InDelta(t, 5*60, queues[1].OldestSeconds, 30, "the oldest over every priority")
}
