package bench

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testdb"
)

// TestApprovals runs the approvals suite small: every measurement must be
// taken (an approval whose inbox row, long poll or callback never came
// fails the suite) and the per-call counts must be those of real work.
func TestApprovals(t *testing.T) {
	t.Parallel()
	pool, dbURL := testdb.Pool(t)
	rep, err := Approvals(context.Background(), pool, dbURL, ApprovalsOptions{Agents: 3, Approvals: 3, Paced: 4, Interval: 20 * time.Millisecond}, io.Discard)
	require.NoError(t, err)
	for name, d := range map[string]any{"auto": rep.AutoP99, "baseline": rep.BaselineP99, "commit": rep.CommitP99,
		"visible": rep.VisibleP99, "notify": rep.NotifyP99, "poll": rep.PollP99, "callback": rep.CallbackP99, "solo": rep.SoloAutoP50,
		"paced": rep.PacedP99, "paced get": rep.PacedGetP99, "paced max": rep.PacedMax} {
		require.Positive(t, d, name)
	}
	require.Greater(t, rep.AutoCommits, 1.0, "an auto-tier POST commits the run and its decision")
	require.Greater(t, rep.AutoStatements, rep.GetStatements)
	require.GreaterOrEqual(t, rep.PacedMax, rep.PacedP99)
	require.Positive(t, rep.PacedRate, "3 agents × 4 paced POSTs over the phase")
	require.NotEmpty(t, rep.LoadBefore)
}
