package bench

import (
	"context"
	"io"
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
	require.Greater(t, rep.Bytes, 100_000, "the scrape carries every loaded series")
	require.Positive(t, rep.ScrapeP95)
	require.Positive(t, rep.BaselineP95)
	require.Len(t, rep.Dashboards, 4, "every window and a filtered month")
	for _, d := range rep.Dashboards {
		require.Positive(t, d.P95, d.Path)
		require.Greater(t, d.Bytes, 10_000, "%s draws its charts", d.Path)
	}
}
