package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
)

// seedMetrics puts a few hours of facts in the rollups, as the metrics
// roller would, including a workflow whose name is markup.
func seedMetrics(t *testing.T, c *console) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	add := func(ago time.Duration, key store.MetricKey, v store.MetricValue) {
		require.NoError(t, store.MetricAdd(ctx, c.Pool, now.Add(-ago), key, v))
	}
	for i := range 6 {
		ago := time.Duration(i) * time.Hour
		add(ago, store.MetricKey{Metric: store.MetricRunFinished, Workflow: "support_triage", Label: "completed"}, store.MetricValue{Count: int64(10 + i)})
		add(ago, store.MetricKey{Metric: store.MetricRunFinished, Workflow: "support_triage", Label: "failed"}, store.MetricValue{Count: 1})
		add(ago, store.MetricKey{Metric: store.MetricApproval, Workflow: "support_triage", Rule: "outbound-email", Tier: "explicit", Label: "human"}, store.MetricValue{Count: 2})
		add(ago, store.MetricKey{Metric: store.MetricApproval, Workflow: "support_triage", Rule: "outbound-email", Tier: "explicit", Label: "auto"}, store.MetricValue{Count: 6})
		var dec store.MetricValue
		dec.Observe(store.MetricDecisionSeconds, 40)
		dec.Observe(store.MetricDecisionSeconds, 400)
		add(ago, store.MetricKey{Metric: store.MetricDecisionSeconds, Workflow: "support_triage", Rule: "outbound-email", Tier: "explicit", Label: "approve"}, dec)
	}
	add(time.Hour, store.MetricKey{Metric: store.MetricRunFinished, Workflow: `<script>alert(1)</script>`, Label: "completed"}, store.MetricValue{Count: 1})
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	seedMetrics(t, c)
	viewer := c.client(t, "viewer@example.com")

	doc, status := c.get(t, viewer, "/dashboard")
	require.Equal(t, http.StatusOK, status)
	runs := doc.Find(`[data-testid=chart-runs]`)
	require.Equal(t, 1, runs.Length())
	require.Positive(t, runs.Find(`svg rect`).Length(), "bars drawn")
	require.Equal(t, "Runs finished, by outcome", runs.Find("figcaption").Text())
	require.Contains(t, runs.Find(`table`).Text(), "completed")
	// Six hours of decisions: a line per tier and percentile.
	require.Equal(t, 2, doc.Find(`[data-testid=chart-decision-time] svg polyline`).Length())
	require.Contains(t, doc.Find(`[data-testid=chart-decision-time] .legend`).Text(), "explicit p95")
	require.Equal(t, 1, doc.Find(`[data-testid=gauge-waiting]`).Length())
	// Model text never runs: the workflow named as markup is an option's escaped text.
	html, err := doc.Html()
	require.NoError(t, err)
	require.NotContains(t, html, "<script>alert(1)</script>")
	require.Contains(t, doc.Find(`[data-testid=dashboard-workflow]`).Text(), "<script>alert(1)</script>")

	t.Run("Filters", func(t *testing.T) {
		doc, status := c.get(t, viewer, "/dashboard?window=week&workflow=support_triage&rule=outbound-email")
		require.Equal(t, http.StatusOK, status)
		require.Equal(t, 1, doc.Find(`[data-testid=rule-wide-runs]`).Length(), "runs have no rule")
		require.Zero(t, doc.Find(`[data-testid=rule-wide-intervention]`).Length())
		sel, _ := doc.Find(`[data-testid=dashboard-window] option[selected]`).Attr("value")
		require.Equal(t, "week", sel)
		require.Contains(t, doc.Find(`[data-testid=chart-intervention] table`).Text(), "25")
	})
	t.Run("BadInputIsA400", func(t *testing.T) {
		for _, path := range []string{"/dashboard?window=year", "/dashboard?workflow=" + strings.Repeat("w", 201)} {
			_, status := c.get(t, viewer, path)
			require.Equal(t, http.StatusBadRequest, status, path)
		}
	})
	t.Run("SignedOutGoesToSignIn", func(t *testing.T) {
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := hc.Get(c.Addr + "/dashboard")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Contains(t, resp.Header.Get("Location"), "/login")
	})
}
