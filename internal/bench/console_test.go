package bench

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testdb"
)

// TestConsoleSuiteReuse runs the console suite small twice on one
// database, the second time with Reuse: it measures every filter
// combination beside the unfiltered page, and the second run loads nothing
// (the same runs, the accounts kept); a database loaded at other sizes is
// refused.
func TestConsoleSuiteReuse(t *testing.T) {
	t.Parallel()
	pool, dbURL := testdb.Pool(t)
	ctx := context.Background()
	o := ConsoleOptions{Runs: 2000, Waiting: 1000, Reviewers: 2, Decisions: 100, Samples: 2, DeepRow: 500}
	rep, err := Console(ctx, pool, dbURL, o, io.Discard)
	require.NoError(t, err)
	require.Len(t, rep.Filters, len(FilterQueries()))
	for _, f := range rep.Filters {
		require.Positive(t, f.P95, f.Query)
		require.Positive(t, f.BaseP95, "%s: the unfiltered page timed beside it", f.Query)
	}

	o.Reuse = true
	_, err = Console(ctx, pool, dbURL, o, io.Discard)
	require.NoError(t, err)
	var runs, requests int
	require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM workflow_runs), (SELECT count(*) FROM approval_requests)`).Scan(&runs, &requests))
	require.Equal(t, o.Runs, runs, "not loaded again")
	require.Equal(t, o.Waiting, requests)

	o.Runs = 3000
	_, err = Console(ctx, pool, dbURL, o, io.Discard)
	require.ErrorContains(t, err, "not 3000 and 1000")
}
