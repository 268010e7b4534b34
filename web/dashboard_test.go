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
	// Model steps of a third of a second: their p95 reads in milliseconds.
	var step store.MetricValue
	step.Observe(store.MetricStepSeconds, 0.3)
	add(time.Hour, store.MetricKey{Metric: store.MetricStepSeconds, Workflow: "support_triage", Label: "model"}, step)
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

	t.Run("DayEndsNow", func(t *testing.T) {
		before := time.Now().UTC().Truncate(time.Second)
		doc, _ := c.get(t, viewer, "/dashboard?window=day")
		after := time.Now().UTC()
		text := doc.Find(`[data-testid=dashboard-period]`).Text()
		require.Contains(t, text, "to now")
		require.Contains(t, text, "the last bar is the current hour so far")
		// The end it names is the time of the request, not a whole hour.
		i := strings.Index(text, "to now, ")
		require.Positive(t, i, text)
		end, err := time.Parse("2006-01-02 15:04:05 UTC", text[i+len("to now, "):i+len("to now, ")+len("2006-01-02 15:04:05 UTC")])
		require.NoError(t, err)
		require.False(t, end.Before(before) || end.After(after), "end %s, request %s–%s", end, before, after)
		week, _ := c.get(t, viewer, "/dashboard?window=week")
		require.Contains(t, week.Find(`[data-testid=dashboard-period]`).Text(), "the current day so far")
	})
	t.Run("StepTimeHasUnits", func(t *testing.T) {
		step := doc.Find(`[data-testid=chart-step-time]`)
		require.Equal(t, "ms", strings.TrimSpace(step.Find(`[data-testid=chart-axis-unit]`).Text()), "the value axis names its unit")
		require.Contains(t, step.Find(`table th`).Text(), "model (ms)")
		require.Contains(t, step.Find(`.legend`).Text(), "(ms)")
		for _, id := range []string{"runs", "decision-time", "intervention"} {
			require.NotEmpty(t, strings.TrimSpace(doc.Find(`[data-testid=chart-`+id+`] [data-testid=chart-axis-unit]`).Text()), id)
		}
	})
	t.Run("UnusableInTheNav", func(t *testing.T) {
		// Every role may read the list, so every role finds it in the nav.
		for _, email := range []string{"viewer@example.com", "reviewer@example.com", "approver@example.com", "admin@example.com"} {
			hc := c.client(t, email)
			doc, _ := c.get(t, hc, "/dashboard")
			link := doc.Find(`[data-testid=nav-unusable]`)
			require.Equal(t, 1, link.Length(), email)
			href, _ := link.Attr("href")
			list, status := c.get(t, hc, href)
			require.Equal(t, http.StatusOK, status, email)
			cur, _ := list.Find(`[data-testid=nav-unusable]`).Attr("aria-current")
			require.Equal(t, "page", cur, "%s: the link marks the page it leads to", email)
		}
	})
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
