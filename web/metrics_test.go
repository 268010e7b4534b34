package web_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// metricsWorkflows registers workflows that exercise each rolled-up
// measure: a model step, a step that times out once, a step that fails once,
// and a rollback.
func metricsWorkflows(r *workflow.Registry, o *ai.Offline) {
	o.Handle("m.gen", func(json.RawMessage) (any, error) { return map[string]int{"n": 1}, nil })
	workflow.Register(r, "m_ok", func(ctx context.Context, _ struct{}) (int, error) {
		if _, err := workflow.Step(ctx, "one", func(context.Context) (int, error) { return 1, nil }); err != nil {
			return 0, err
		}
		out, err := workflow.Generate[map[string]int](ctx, "gen", ai.Request{Task: "m.gen"})
		return out["n"], err
	})
	var slow, flaky atomic.Int32
	fast := workflow.RetryPolicy{MaxAttempts: 3, InitialInterval: 10 * time.Millisecond}
	workflow.Register(r, "m_timeout", func(ctx context.Context, _ struct{}) (int, error) {
		return workflow.Step(ctx, "slow", func(ctx context.Context) (int, error) {
			if slow.Add(1) == 1 {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			return 1, nil
		}, workflow.WithRetry(fast))
	}, workflow.Options{StepTimeout: 200 * time.Millisecond})
	workflow.Register(r, "m_flaky", func(ctx context.Context, _ struct{}) (int, error) {
		return workflow.Step(ctx, "flaky", func(context.Context) (int, error) {
			if flaky.Add(1) == 1 {
				return 0, workflow.Error("busy", "busy")
			}
			return 1, nil
		}, workflow.WithRetry(fast))
	})
	workflow.Register(r, "m_rollback", func(ctx context.Context, _ struct{}) (int, error) {
		if _, err := workflow.Effect(ctx, "reserve", func(context.Context, workflow.EffectContext) (int, error) { return 1, nil }); err != nil {
			return 0, err
		}
		return workflow.Step(ctx, "fail", func(context.Context) (int, error) {
			return 0, workflow.Error("busy", "always busy")
		}, workflow.WithRetry(workflow.RetryPolicy{MaxAttempts: 2, InitialInterval: 10 * time.Millisecond}))
	})
	workflow.Compensate(r, "m_rollback", "reserve", func(context.Context, workflow.EffectContext, int) error { return nil })
}

// totals reads metric_totals as a map.
func totals(t *testing.T, c *console) map[store.MetricKey]store.MetricValue {
	t.Helper()
	rows, err := store.MetricTotals(context.Background(), c.Pool)
	require.NoError(t, err)
	out := map[store.MetricKey]store.MetricValue{}
	for _, r := range rows {
		out[r.MetricKey] = r.MetricValue
	}
	return out
}

// TestMetrics runs workflows of every kind through a real process, then
// checks that the roller's totals match what the base tables hold, and that
// GET /metrics shows them to a metrics:read token only.
func TestMetrics(t *testing.T) {
	t.Parallel()
	c := startConsole(t, metricsWorkflows)
	ctx := context.Background()
	var ids []string
	for _, wf := range []string{"m_ok", "m_timeout", "m_flaky", "m_rollback"} {
		raw, _ := json.Marshal(struct{}{})
		run, _, err := c.Engine.Start(ctx, workflow.StartParams{Workflow: wf, BusinessKey: "k-" + wf, Input: raw, StartedBy: "admin@example.com"})
		require.NoError(t, err)
		ids = append(ids, run.ID)
	}
	// A human decision, through the API.
	_, req := c.startRun(t, "support_triage", "T-m1", demo.Ticket{ID: "m1", Customer: "a@example.com", Subject: "Refund",
		Body: "broken", OrderTotal: 900}, "api@example.com")
	for _, who := range []string{"approver@example.com", "approver2@example.com"}[:req.ApprovalsRequired] {
		require.Equal(t, 200, c.api(t, who).do("POST", "/requests/"+req.ID+"/decision",
			map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash}, nil))
	}
	ids = append(ids, req.RunID)
	for _, id := range ids {
		c.WaitRunWithin(t, id, 60*time.Second, vocab.RunCompleted, vocab.RunFailed, vocab.RunCompensated, vocab.RunCompensationFailed, vocab.RunRejected)
	}
	require.Equal(t, vocab.RunCompensated, c.WaitRun(t, ids[3], vocab.RunCompensated).Status)
	var flagged store.Unusable
	require.Equal(t, 201, c.api(t, "reviewer@example.com").do("POST", "/runs/"+ids[0]+"/unusable",
		map[string]any{"category": "incorrect", "reason": "made up"}, &flagged))

	// What the base tables say, counted the slow way.
	want := map[store.MetricKey]int64{}
	q := func(sql string, metric string) {
		rows, err := c.Pool.Query(ctx, sql)
		require.NoError(t, err)
		for rows.Next() {
			var k store.MetricKey
			var n int64
			require.NoError(t, rows.Scan(&k.Workflow, &k.Label, &n))
			k.Metric = metric
			want[k] = n
		}
		require.NoError(t, rows.Err())
	}
	q(`SELECT workflow, '', count(*) FROM workflow_runs GROUP BY 1`, store.MetricRunStarted)
	q(`SELECT workflow, status, count(*) FROM workflow_runs GROUP BY 1, 2`, store.MetricRunFinished)
	q(`SELECT r.workflow, s.kind, count(*) FROM workflow_steps s JOIN workflow_runs r ON r.id = s.run_id
		WHERE s.finished_at IS NOT NULL GROUP BY 1, 2`, store.MetricStepSeconds)
	q(`SELECT r.workflow, coalesce(s.model, ''), count(*) FROM workflow_steps s JOIN workflow_runs r ON r.id = s.run_id
		WHERE s.kind = 'model' GROUP BY 1, 2`, store.MetricModelTokens)
	want[store.MetricKey{Metric: store.MetricStepTimeout, Workflow: "m_timeout", Label: "step"}] = 1
	want[store.MetricKey{Metric: store.MetricStepTimeoutRecovered, Workflow: "m_timeout", Label: "step"}] = 1
	want[store.MetricKey{Metric: store.MetricStepRetrySucceeded, Workflow: "m_flaky", Label: "step"}] = 1
	want[store.MetricKey{Metric: store.MetricStepRetryFailed, Workflow: "m_rollback", Label: "step"}] = 1
	want[store.MetricKey{Metric: store.MetricRollback, Workflow: "m_rollback", Label: "failed"}] = 1
	want[store.MetricKey{Metric: store.MetricRollbackCompensated, Workflow: "m_rollback", Label: "failed"}] = 1
	want[store.MetricKey{Metric: store.MetricRunUnusable, Workflow: "m_ok", Label: "incorrect"}] = 1
	want[store.MetricKey{Metric: store.MetricDecisionSeconds, Workflow: "support_triage", Rule: req.Rule, Tier: string(req.Tier), Label: "approve"}] = 1
	want[store.MetricKey{Metric: store.MetricApproval, Workflow: "support_triage", Rule: req.Rule, Tier: string(req.Tier), Label: "human"}] = 1
	require.NotEmpty(t, want[store.MetricKey{Metric: store.MetricModelTokens, Workflow: "m_ok", Label: "offline"}], "the model step names its model")

	// The process's own roller folds them (chained first, then rolled).
	var got map[store.MetricKey]store.MetricValue
	counts := func() map[store.MetricKey]int64 {
		got = totals(t, c)
		out := map[store.MetricKey]int64{}
		for k := range want {
			out[k] = got[k].Count
		}
		return out
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && !maps.Equal(counts(), want) {
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, want, counts())
	require.Len(t, got[store.MetricKey{Metric: store.MetricStepSeconds, Workflow: "m_ok", Label: "step"}].Buckets,
		len(store.MetricBounds(store.MetricStepSeconds))+1)
	for k, v := range got {
		if k.Metric == store.MetricRunFinished || k.Metric == store.MetricStepSeconds {
			require.Equal(t, want[k], v.Count, "%v is counted once, no more", k)
		}
	}

	scrape := func(token string) (int, string) {
		req, err := http.NewRequest("GET", c.Addr+"/metrics", nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	t.Run("NeedsAToken", func(t *testing.T) {
		code, _ := scrape("")
		require.Equal(t, 401, code)
		code, body := scrape(c.apiScoped(t, "admin@example.com", account.ScopeRunsRead).token)
		require.Equal(t, 403, code, body)
		require.Contains(t, body, "metrics:read")
	})
	t.Run("Content", func(t *testing.T) {
		code, body := scrape(c.apiScoped(t, "viewer@example.com", account.ScopeMetricsRead).token)
		require.Equal(t, 200, code, body)
		for _, line := range []string{
			`countersign_runs_finished_total{status="compensated",workflow="m_rollback"} 1`,
			`countersign_runs_started_total{workflow="m_ok"} 1`,
			`countersign_step_timeouts_total{kind="step",workflow="m_timeout"} 1`,
			`countersign_step_timeouts_recovered_total{kind="step",workflow="m_timeout"} 1`,
			`countersign_steps_retried_succeeded_total{kind="step",workflow="m_flaky"} 1`,
			`countersign_rollbacks_total{cause="failed",workflow="m_rollback"} 1`,
			`countersign_runs_unusable_total{category="incorrect",workflow="m_ok"} 1`,
			`countersign_model_steps_total{model="offline",workflow="m_ok"} 1`,
			`countersign_approvals_total{decided_by="human",rule="` + req.Rule + `",tier="` + string(req.Tier) + `",workflow="support_triage"} 1`,
			`countersign_decision_seconds_count{rule="` + req.Rule + `",tier="` + string(req.Tier) + `",verdict="approve",workflow="support_triage"} 1`,
			`countersign_step_duration_seconds_bucket{kind="step",workflow="m_ok",le="+Inf"} 1`,
			`countersign_metrics_up 1`,
			`countersign_metrics_rollup_backlog{source="runs"} 0`,
		} {
			require.Contains(t, body, line+"\n")
		}
		require.Contains(t, body, `countersign_requests_waiting{tier="explicit"} 0`+"\n", "every tier, even with nothing waiting")
	})
}

// TestRunUnusable flags completed runs over the API and the console: roles
// and scopes are checked before anything is written, only a completed run
// and only once, bad input is a 4xx, and each flag is audited and listed.
func TestRunUnusable(t *testing.T) {
	t.Parallel()
	c := startConsole(t, metricsWorkflows)
	ctx := context.Background()
	raw, _ := json.Marshal(struct{}{})
	start := func(key string) string {
		run, _, err := c.Engine.Start(ctx, workflow.StartParams{Workflow: "m_ok", BusinessKey: key, Input: raw, StartedBy: "admin@example.com"})
		require.NoError(t, err)
		c.WaitRun(t, run.ID, vocab.RunCompleted)
		return run.ID
	}
	done := start("u1")
	waiting, _ := c.startRun(t, "support_triage", "T-u1", demo.Ticket{ID: "u1", Customer: "a@example.com", Subject: "Refund",
		Body: "broken", OrderTotal: 900}, "api@example.com")
	flags := func(runID string) (rows, events int) {
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM run_unusable WHERE run_id = $1`, runID).Scan(&rows))
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE run_id = $1 AND kind = 'run.flagged_unusable'`, runID).Scan(&events))
		return rows, events
	}
	body := map[string]any{"category": "incorrect", "reason": "the total is wrong"}

	t.Run("API", func(t *testing.T) {
		var e apiErr
		require.Equal(t, 403, c.api(t, "viewer@example.com").do("POST", "/runs/"+done+"/unusable", body, &e))
		require.Equal(t, 403, c.apiScoped(t, "reviewer@example.com", account.ScopeRunsWrite).do("POST", "/runs/"+done+"/unusable", body, &e))
		require.Contains(t, e.Error.Message, "runs:flag")
		rows, events := flags(done)
		require.Zero(t, rows+events, "a refused actor leaves no row and no event")

		reviewer := c.apiScoped(t, "reviewer@example.com", account.ScopeRunsFlag)
		for _, tc := range []struct {
			name string
			path string
			body any
			code int
			msg  string
		}{
			{"UnknownCategory", done, map[string]any{"category": "meh", "reason": "x"}, 422, "category must be one of"},
			{"NoReason", done, map[string]any{"category": "other", "reason": "  "}, 422, "reason is required"},
			{"LongReason", done, map[string]any{"category": "other", "reason": strings.Repeat("x", 2001)}, 422, "over 2000"},
			{"NotJSON", done, "{", 400, ""},
			{"NotAnID", "nope", body, 404, "not found"},
			{"UnknownRun", "00000000-0000-0000-0000-000000000000", body, 404, "not found"},
			{"NotCompleted", waiting.ID, body, 409, "only a completed run"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var e apiErr
				require.Equal(t, tc.code, reviewer.do("POST", "/runs/"+tc.path+"/unusable", tc.body, &e), e.Error.Message)
				require.Contains(t, e.Error.Message, tc.msg)
			})
		}
		rows, events = flags(waiting.ID)
		require.Zero(t, rows+events)

		var u struct {
			RunID    string `json:"run_id"`
			Workflow string `json:"workflow"`
			Category string `json:"category"`
		}
		require.Equal(t, 201, reviewer.do("POST", "/runs/"+done+"/unusable", body, &u))
		require.Equal(t, done, u.RunID)
		require.Equal(t, "m_ok", u.Workflow)
		require.Equal(t, "incorrect", u.Category)
		var ev struct {
			Actor   string
			Details json.RawMessage
		}
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT actor, details FROM audit_events WHERE run_id = $1 AND kind = 'run.flagged_unusable'`, done).
			Scan(&ev.Actor, &ev.Details))
		require.Equal(t, "reviewer@example.com", ev.Actor)
		require.JSONEq(t, `{"workflow":"m_ok","category":"incorrect","reason":"the total is wrong"}`, string(ev.Details))

		var e2 apiErr
		require.Equal(t, 409, reviewer.do("POST", "/runs/"+done+"/unusable", body, &e2))
		require.Equal(t, "already_flagged", e2.Error.Code)
		rows, events = flags(done)
		require.Equal(t, 1, rows)
		require.Equal(t, 1, events)
	})

	t.Run("Console", func(t *testing.T) {
		run := start("u2")
		viewer := c.client(t, "viewer@example.com")
		doc, code := c.get(t, viewer, "/runs/"+run)
		require.Equal(t, 200, code)
		require.Zero(t, doc.Find(`[data-testid="unusable-form"]`).Length(), "viewers are not offered the form")
		resp, _ := c.post(t, viewer, "/runs/"+run, "/runs/"+run+"/unusable", url.Values{"category": {"format"}, "reason": {"x"}})
		require.Equal(t, 403, resp.StatusCode)
		rows, events := flags(run)
		require.Zero(t, rows+events)

		reviewer := c.client(t, "reviewer@example.com")
		doc, _ = c.get(t, reviewer, "/runs/"+run)
		require.Equal(t, 1, doc.Find(`[data-testid="unusable-form"]`).Length())
		form := url.Values{"category": {"format"}, "reason": {"<b>not JSON</b>"}}
		noCSRF, err := reviewer.PostForm(c.Addr+"/runs/"+run+"/unusable", form)
		require.NoError(t, err)
		noCSRF.Body.Close()
		require.Equal(t, 403, noCSRF.StatusCode, "a form without the CSRF token is refused")
		require.Equal(t, "", doc.Find(`[data-testid="unusable-category"] option[selected]`).AttrOr("value", "-"),
			"no category is chosen for the reviewer")
		// A reason of spaces passes the browser's "required": the run page
		// comes back with the form open, saying what is wrong, keeping what was typed.
		resp, body := c.post(t, reviewer, "/runs/"+run, "/runs/"+run+"/unusable", url.Values{"category": {"unsafe"}, "reason": {"   "}})
		require.Equal(t, 422, resp.StatusCode)
		doc, err = goquery.NewDocumentFromReader(strings.NewReader(body))
		require.NoError(t, err)
		require.Equal(t, "Say why the output is unusable (a reason is required).", doc.Find(`[data-testid="unusable-error"]`).Text())
		_, open := doc.Find(`[data-testid="unusable-details"]`).Attr("open")
		require.True(t, open)
		require.Equal(t, "unsafe", doc.Find(`[data-testid="unusable-category"] option[selected]`).AttrOr("value", ""))
		require.Equal(t, "   ", doc.Find(`[data-testid="unusable-reason"]`).Text())
		require.Equal(t, "unusable-error", doc.Find(`[data-testid="unusable-reason"]`).AttrOr("aria-describedby", ""))
		require.Equal(t, 1, doc.Find(`[data-testid="run"]`).Length(), "the run page, not an error page")
		resp, body = c.post(t, reviewer, "/runs/"+run, "/runs/"+run+"/unusable", url.Values{"category": {"bogus"}, "reason": {"wrong"}})
		require.Equal(t, 422, resp.StatusCode)
		require.Contains(t, body, "Category must be one of incorrect")
		require.Contains(t, body, ">wrong</textarea>")
		resp, _ = c.post(t, reviewer, "/runs/"+run, "/runs/"+run+"/unusable", form)
		require.Equal(t, 303, resp.StatusCode, "back to the run page")
		require.Equal(t, "/runs/"+run+"?done=unusable", resp.Header.Get("Location"))
		doc, _ = c.get(t, reviewer, "/runs/"+run)
		flag := doc.Find(`[data-testid="run-unusable"]`)
		require.Contains(t, flag.Text(), "format")
		require.Contains(t, flag.Text(), "<b>not JSON</b>", "the reason is text, escaped")
		require.Zero(t, doc.Find(`[data-testid="unusable-form"]`).Length())
		// A second flag (another tab, a colleague first): the page says so and shows the flag.
		resp, body = c.post(t, reviewer, "/runs/"+run, "/runs/"+run+"/unusable", url.Values{"category": {"unsafe"}, "reason": {"again"}})
		require.Equal(t, 409, resp.StatusCode)
		doc, err = goquery.NewDocumentFromReader(strings.NewReader(body))
		require.NoError(t, err)
		require.Equal(t, "The run is already flagged unusable.", doc.Find(`[data-testid="error"]`).Text())
		require.Equal(t, 1, doc.Find(`[data-testid="run-unusable"]`).Length())

		doc, code = c.get(t, viewer, "/unusable")
		require.Equal(t, 200, code)
		require.Equal(t, 2, doc.Find(`[data-testid="unusable-row"]`).Length())
		doc, _ = c.get(t, viewer, "/unusable?category=format")
		require.Equal(t, 1, doc.Find(`[data-testid="unusable-row"]`).Length())
		require.Contains(t, doc.Find(`[data-testid="unusable-row"] a`).AttrOr("href", ""), run)
		require.Equal(t, "u2", doc.Find(`[data-testid="unusable-run"]`).Text(), "the run by its business key, not its id")
		doc, _ = c.get(t, viewer, "/unusable?category=unsafe")
		require.Equal(t, 1, doc.Find(`[data-testid="unusable-empty"]`).Length())
		_, code = c.get(t, viewer, "/unusable?category=bogus")
		require.Equal(t, 400, code)
	})
}

// TestMetricsListener: COUNTERSIGN_METRICS_ADDR serves GET /metrics on a
// listener of its own without a token, and nothing else there.
func TestMetricsListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	startConsoleWith(t, testapp.Options{MetricsAddr: addr})
	get := func(path string) (int, string) {
		var resp *http.Response
		require.Eventually(t, func() bool {
			resp, err = http.Get("http://" + addr + path)
			return err == nil
		}, 10*time.Second, 50*time.Millisecond)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	code, body := get("/metrics")
	require.Equal(t, 200, code)
	require.Contains(t, body, "countersign_metrics_up 1\n")
	require.Contains(t, body, `countersign_queue_latency_seconds{queue="default"} 0`+"\n")
	require.Contains(t, body, `countersign_queue_jobs_ready{queue="callbacks"} 0`+"\n")
	code, _ = get("/")
	require.Equal(t, 404, code, "only /metrics")
}
