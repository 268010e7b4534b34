package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testdb"
)

// TestMetricsSuite runs the metrics suite small: the rollups are loaded,
// every scrape answers 200 with the loaded series, and both sides are timed.
func TestMetricsSuite(t *testing.T) {
	t.Parallel()
	pool, dbURL := testdb.Pool(t)
	rep, err := Metrics(context.Background(), pool, dbURL, MetricsOptions{Runs: 2000, Waiting: 200, Backlog: 50, Samples: 5}, io.Discard)
	require.NoError(t, err)
	require.EqualValues(t, 970, rep.TotalsRows, "ten workflows' label combinations")
	require.EqualValues(t, 970*720, rep.HourRows)
	require.Positive(t, rep.DayRows)
	// Each loaded day is the sum of its loaded hours, as the roller keeps
	// them: counts, sums and every histogram element.
	var elems []string
	for i := 1; i <= 18; i++ {
		elems = append(elems, fmt.Sprintf("coalesce(sum(buckets[%d]), 0)", i))
	}
	sums := "sum(count)::bigint AS count, sum(sum) AS sum, ARRAY[" + strings.Join(elems, ", ") + "] AS el"
	var mismatched int
	require.NoError(t, pool.QueryRow(context.Background(), `
WITH h AS (SELECT date_bin('1 day', hour, timestamptz '2000-01-01 00:00:00+00') AS day, metric, workflow, rule, tier, label, `+sums+`
    FROM metric_hours GROUP BY 1, 2, 3, 4, 5, 6),
d AS (SELECT day, metric, workflow, rule, tier, label, `+sums+` FROM metric_days GROUP BY 1, 2, 3, 4, 5, 6)
SELECT count(*) FROM h FULL JOIN d USING (day, metric, workflow, rule, tier, label)
WHERE h.count IS DISTINCT FROM d.count OR h.sum IS DISTINCT FROM d.sum OR h.el IS DISTINCT FROM d.el`).Scan(&mismatched))
	require.Zero(t, mismatched, "days that are not the sum of their hours")
	require.Greater(t, rep.Bytes, 100_000, "the scrape carries every loaded series")
	require.Positive(t, rep.ScrapeP95)
	require.Positive(t, rep.BaselineP95)
	require.Len(t, rep.Dashboards, 4, "every window and a filtered month")
	for _, d := range rep.Dashboards {
		require.Positive(t, d.P95, d.Path)
		require.Greater(t, d.Bytes, 10_000, "%s draws its charts", d.Path)
	}
}
