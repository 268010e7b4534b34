package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/client"
)

// MetricsOptions size the metrics benchmark.
type MetricsOptions struct {
	Runs    int // runs in the database
	Waiting int // of which waiting, each with a pending request (the gauge's rows)
	Backlog int // River jobs ready and not picked up (queue latency's rows)
	Samples int // scrapes timed
}

// MetricsReport holds the results.
type MetricsReport struct {
	Options  MetricsOptions
	LoadTime time.Duration
	// LoadBefore and LoadAfter are /proc/loadavg around the measurement.
	LoadBefore, LoadAfter string
	// TotalsRows, HourRows and DayRows are the rollups' sizes; Bytes a
	// scrape's size.
	TotalsRows, HourRows, DayRows int64
	Bytes                         int
	// The baseline: GET /readyz (one database round trip through the same
	// server), then GET /metrics with a metrics:read token.
	BaselineP50, BaselineP95 time.Duration
	ScrapeP50, ScrapeP95     time.Duration
	// Dashboards are GET /dashboard's times, signed in as a viewer, next to
	// the same /readyz baseline: one entry per view timed.
	Dashboards []DashboardTiming
}

// dashboardSamples bounds the pages timed per dashboard view.
const dashboardSamples = 40

// DashboardTiming is one dashboard view's page times.
type DashboardTiming struct {
	Path     string
	Pages    int
	P50, P95 time.Duration
	Bytes    int
}

// Metrics loads a million runs, a month of rollups and a backlog, then times
// scrapes of GET /metrics through the real HTTP server next to /readyz.
func Metrics(ctx context.Context, pool *pgxpool.Pool, dbURL string, o MetricsOptions, progress io.Writer) (*MetricsReport, error) {
	rep := &MetricsReport{Options: o}
	fmt.Fprintf(progress, "metrics: loading %d runs, %d waiting requests, %d ready jobs and a month of rollups ...\n", o.Runs, o.Waiting, o.Backlog)
	start := time.Now()
	if err := load(ctx, pool, ConsoleOptions{Runs: o.Runs, Waiting: o.Waiting}); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := loadMetrics(ctx, pool, o); err != nil {
		return nil, fmt.Errorf("load rollups: %w", err)
	}
	rep.LoadTime = time.Since(start)
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM metric_totals), (SELECT count(*) FROM metric_hours),
    (SELECT count(*) FROM metric_days)`).Scan(&rep.TotalsRows, &rep.HourRows, &rep.DayRows); err != nil {
		return nil, err
	}
	if _, err := account.Create(ctx, pool, "ops@bench.example", "Ops", "viewer", benchPassword, "bench"); err != nil {
		return nil, err
	}
	_, secret, err := account.CreateToken(ctx, pool, account.TokenParams{Email: "ops@bench.example", Name: "prometheus",
		Scopes: []string{account.ScopeMetricsRead}, By: "bench"})
	if err != nil {
		return nil, err
	}
	_, base, stop, err := startApp(ctx, pool, dbURL, 1, app.Options{Web: true})
	if err != nil {
		return nil, err
	}
	defer stop()

	get := func(path string) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return len(b), nil
	}
	// Warm both paths (connections, plans) before timing.
	for range 5 {
		if _, err := get("/readyz"); err != nil {
			return nil, err
		}
		if rep.Bytes, err = get("/metrics"); err != nil {
			return nil, err
		}
	}
	fmt.Fprintf(progress, "metrics: %d scrapes next to %d /readyz ...\n", o.Samples, o.Samples)
	rep.LoadBefore = loadavg()
	var readyz, scrape []time.Duration
	for range o.Samples {
		// Interleaved, so that both see the same load.
		t0 := time.Now()
		if _, err := get("/readyz"); err != nil {
			return nil, err
		}
		readyz = append(readyz, time.Since(t0))
		t0 = time.Now()
		if _, err := get("/metrics"); err != nil {
			return nil, err
		}
		scrape = append(scrape, time.Since(t0))
	}
	rep.BaselineP50, rep.BaselineP95 = percentile(readyz, 50), percentile(readyz, 95)
	rep.ScrapeP50, rep.ScrapeP95 = percentile(scrape, 50), percentile(scrape, 95)

	// The dashboard over the same data, every window and a filtered month,
	// each view timed as often as the scrape, in turns with the others.
	viewer, err := client.SignIn(base, "ops@bench.example", benchPassword)
	if err != nil {
		return nil, fmt.Errorf("sign in: %w", err)
	}
	paths := []string{"/dashboard?window=day", "/dashboard?window=week", "/dashboard?window=month",
		"/dashboard?window=month&workflow=workflow_3&rule=rule_2"}
	page := func(path string) (int, error) {
		resp, err := viewer.HTTP.Get(base + path)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		return len(b), nil
	}
	times := make([][]time.Duration, len(paths))
	rep.Dashboards = make([]DashboardTiming, len(paths))
	for i, path := range paths { // warm
		rep.Dashboards[i].Path = path
		if rep.Dashboards[i].Bytes, err = page(path); err != nil {
			return nil, err
		}
	}
	// At most dashboardSamples of each view, so that make bench ends even
	// when a view is slow (a month took seconds before the daily rollups).
	pages := min(o.Samples, dashboardSamples)
	fmt.Fprintf(progress, "metrics: %d dashboard pages of each of %d views ...\n", pages, len(paths))
	for range pages {
		for i, path := range paths {
			t0 := time.Now()
			if _, err := page(path); err != nil {
				return nil, err
			}
			times[i] = append(times[i], time.Since(t0))
		}
	}
	for i := range paths {
		rep.Dashboards[i].Pages = pages
		rep.Dashboards[i].P50, rep.Dashboards[i].P95 = percentile(times[i], 50), percentile(times[i], 95)
	}
	rep.LoadAfter = loadavg()
	return rep, nil
}

// loadMetrics fills the rollups as a month of a busy installation would: ten
// workflows of three rules each, every metric's label combinations, one row
// per hour and key, and their totals; and a backlog of ready jobs in the
// default queue (the suite's process has no workers, so they stay). Then
// VACUUM ANALYZE, as autovacuum would have by then.
func loadMetrics(ctx context.Context, pool *pgxpool.Pool, o MetricsOptions) error {
	keys := `
WITH wf AS (SELECT 'workflow_' || w AS workflow, w FROM generate_series(1, 10) w),
keys AS (
    SELECT 'run_started' AS metric, workflow, '' AS rule, '' AS tier, '' AS label, 0 AS nb FROM wf
    UNION ALL SELECT 'run_finished', workflow, '', '', s, 18 FROM wf,
        unnest(ARRAY['completed','failed','rejected','cancelled','compensated','compensation_failed']) s
    UNION ALL SELECT 'step_seconds', workflow, '', '', k, 18 FROM wf,
        unnest(ARRAY['step','model','effect','approval','sleep','event','compensation']) k
    UNION ALL SELECT m, workflow, '', '', k, 0 FROM wf,
        unnest(ARRAY['step_timeout','step_timeout_recovered','step_retry','step_retry_succeeded','step_retry_failed']) m,
        unnest(ARRAY['step','model','effect']) k
    UNION ALL SELECT 'approval', workflow, 'rule_' || r, t, l, 0 FROM wf, generate_series(1, 3) r,
        unnest(ARRAY['auto','batched','explicit']) t, unnest(ARRAY['auto','human']) l
    UNION ALL SELECT 'decision_seconds', workflow, 'rule_' || r, t, v, 17 FROM wf, generate_series(1, 3) r,
        unnest(ARRAY['batched','explicit']) t, unnest(ARRAY['approve','reject','edit','request_changes']) v
    UNION ALL SELECT 'deadline', workflow, 'rule_' || r, 'explicit', d, 0 FROM wf, generate_series(1, 3) r,
        unnest(ARRAY['approved','rejected','escalated']) d
    UNION ALL SELECT m, workflow, '', '', c, 0 FROM wf,
        unnest(ARRAY['rollback','rollback_compensated','rollback_failed']) m, unnest(ARRAY['failed','rejected','cancelled']) c
    UNION ALL SELECT 'run_unusable', workflow, '', '', c, 0 FROM wf,
        unnest(ARRAY['incorrect','incomplete','format','unsafe','irrelevant','other']) c
    UNION ALL SELECT 'model_tokens', workflow, '', '', m, 0 FROM wf, unnest(ARRAY['gpt-4o','gpt-4o-mini']) m
)`
	for _, q := range []string{
		keys + `
INSERT INTO metric_hours (hour, metric, workflow, rule, tier, label, count, sum, buckets)
SELECT date_trunc('hour', now()) - make_interval(hours => h), metric, workflow, rule, tier, label, 10, 42.5,
    CASE WHEN nb = 0 THEN '{}'::bigint[] ELSE array_fill(1::bigint, ARRAY[nb]) END
FROM keys, generate_series(0, 719) h`,
		// The days of those hours, as the roller keeps them (store.MetricAdd
		// adds a fact to its hour and its day) and as migration 35 derived
		// them: each day the sum of its hours, histograms element-wise.
		`
INSERT INTO metric_days (day, metric, workflow, rule, tier, label, count, sum, buckets)
WITH totals AS (
    SELECT date_bin('1 day', hour, timestamptz '2000-01-01 00:00:00+00') AS day, metric, workflow, rule, tier, label,
        sum(count)::bigint AS count, sum(sum) AS sum
    FROM metric_hours GROUP BY 1, 2, 3, 4, 5, 6
), elements AS (
    SELECT date_bin('1 day', h.hour, timestamptz '2000-01-01 00:00:00+00') AS day, h.metric, h.workflow, h.rule, h.tier,
        h.label, u.ord, sum(u.n)::bigint AS n
    FROM metric_hours h, unnest(h.buckets) WITH ORDINALITY AS u(n, ord)
    GROUP BY 1, 2, 3, 4, 5, 6, 7
), histograms AS (
    SELECT day, metric, workflow, rule, tier, label, array_agg(n ORDER BY ord) AS buckets
    FROM elements GROUP BY 1, 2, 3, 4, 5, 6
)
SELECT t.day, t.metric, t.workflow, t.rule, t.tier, t.label, t.count, t.sum, coalesce(h.buckets, '{}')
FROM totals t LEFT JOIN histograms h USING (day, metric, workflow, rule, tier, label)`,
		keys + `
INSERT INTO metric_totals (metric, workflow, rule, tier, label, count, sum, buckets)
SELECT metric, workflow, rule, tier, label, 87600, 372300,
    CASE WHEN nb = 0 THEN '{}'::bigint[] ELSE array_fill(8760::bigint, ARRAY[nb]) END
FROM keys`,
		fmt.Sprintf(`INSERT INTO river_job (args, kind, max_attempts, queue, scheduled_at)
SELECT '{}', 'bench_backlog', 1, 'default', now() - make_interval(secs => g) FROM generate_series(1, %d) g`, o.Backlog),
		`VACUUM ANALYZE workflow_runs`,
		`VACUUM ANALYZE approval_requests`,
		`VACUUM ANALYZE metric_totals`,
		`VACUUM ANALYZE metric_hours`,
		`VACUUM ANALYZE metric_days`,
		`VACUUM ANALYZE river_job`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
