package store

import (
	"context"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"
)

// Dimensions a dashboard series is grouped by.
const (
	ByLabel    = "label"
	ByTier     = "tier"
	ByRule     = "rule"
	ByWorkflow = "workflow"
)

// SeriesQuery selects one metric's rows in [Since, Until), folded into
// buckets of Step from Origin (Since when zero), grouped by By (ByLabel,
// ByTier, ByRule or ByWorkflow), and only Workflow's, Rule's or Label's when
// they are not "". Since is a whole hour; Until may be any time (now): the
// hour containing it counts as far as it is rolled.
type SeriesQuery struct {
	Metric   string
	Since    time.Time
	Until    time.Time
	Origin   time.Time
	Step     time.Duration
	By       string
	Workflow string
	Rule     string
	Label    string
}

// SeriesPoint is a group's count and sum in one bucket.
type SeriesPoint struct {
	Bucket time.Time
	Group  string
	Count  int64
	Sum    float64
}

// HistogramPoint is a group's histogram in one bucket: non-cumulative counts
// per bound of MetricBounds, the last above every bound.
type HistogramPoint struct {
	Bucket  time.Time
	Group   string
	Buckets []int64
}

// days returns the whole days of q that metric_days answers: [since, until)
// where both are UTC midnights, or since = until = q.Until when q has none.
// A day row can stand for its hours only when the buckets are whole days
// counted from a midnight, so that no bucket edge falls inside it.
func (q SeriesQuery) days() (since, until time.Time) {
	origin := q.origin()
	if q.Step <= 0 || q.Step%(24*time.Hour) != 0 || !DayOf(origin).Equal(origin) {
		return q.Until, q.Until
	}
	since, until = DayOf(q.Since), DayOf(q.Until)
	if since.Before(q.Since) {
		since = since.AddDate(0, 0, 1)
	}
	if !since.Before(until) {
		return q.Until, q.Until
	}
	return since, until
}

func (q SeriesQuery) origin() time.Time {
	if q.Origin.IsZero() {
		return q.Since
	}
	return q.Origin
}

func (q SeriesQuery) params() dbsqlc.MetricSeriesParams {
	daySince, dayUntil := q.days()
	return dbsqlc.MetricSeriesParams{StepSeconds: q.Step.Seconds(), Origin: q.origin(), ByDim: q.By, Metric: q.Metric,
		Since: q.Since, Until: q.Until, DaySince: daySince, DayUntil: dayUntil, Workflow: q.Workflow, Rule: q.Rule, Label: q.Label}
}

// MetricSeries returns q's counts and sums by bucket and group, in bucket
// order; buckets and groups without data are absent. It reads the whole
// days of q from metric_days and only the hours at its edges from
// metric_hours: a month costs about 30 + 24 rows per key, not 720.
func MetricSeries(ctx context.Context, db DBTX, q SeriesQuery) ([]SeriesPoint, error) {
	rows, err := queries.MetricSeries(ctx, db, q.params())
	if err != nil {
		return nil, fmt.Errorf("read %s series: %w", q.Metric, interpret(err))
	}
	out := make([]SeriesPoint, len(rows))
	for i, r := range rows {
		out[i] = SeriesPoint{Bucket: r.Bucket, Group: r.Grp, Count: r.Count, Sum: r.Total}
	}
	return out, nil
}

// MetricHistogramSeries returns q's histograms by bucket and group, in
// bucket order, read as MetricSeries reads. The rows' arrays are added
// element-wise here: one row per key and day (or edge hour) crosses the
// wire, where unnesting them in SQL made a row per histogram bucket.
func MetricHistogramSeries(ctx context.Context, db DBTX, q SeriesQuery) ([]HistogramPoint, error) {
	rows, err := queries.MetricHistogramSeries(ctx, db, dbsqlc.MetricHistogramSeriesParams(q.params()))
	if err != nil {
		return nil, fmt.Errorf("read %s histogram series: %w", q.Metric, interpret(err))
	}
	var out []HistogramPoint
	for _, r := range rows {
		n := len(out)
		if n == 0 || !out[n-1].Bucket.Equal(r.Bucket) || out[n-1].Group != r.Grp {
			out = append(out, HistogramPoint{Bucket: r.Bucket, Group: r.Grp})
			n++
		}
		v := MetricValue{Buckets: out[n-1].Buckets}
		v.Add(MetricValue{Buckets: r.Buckets})
		out[n-1].Buckets = v.Buckets
	}
	return out, nil
}

// MetricWorkflowNames and MetricRuleNames list the workflows and rules that
// have any metric, for the dashboard's filter menus.
func MetricWorkflowNames(ctx context.Context, db DBTX) ([]string, error) {
	names, err := queries.MetricWorkflows(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list metric workflows: %w", interpret(err))
	}
	return names, nil
}

// MetricRuleNames: see MetricWorkflowNames.
func MetricRuleNames(ctx context.Context, db DBTX) ([]string, error) {
	names, err := queries.MetricRules(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list metric rules: %w", interpret(err))
	}
	return names, nil
}
