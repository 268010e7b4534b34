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

// SeriesQuery selects one metric's hourly rows in [Since, Until), folded into
// buckets of Step from Since, grouped by By (ByLabel, ByTier, ByRule or
// ByWorkflow), and only Workflow's, Rule's or Label's when they are not "".
type SeriesQuery struct {
	Metric   string
	Since    time.Time
	Until    time.Time
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

func (q SeriesQuery) params() dbsqlc.MetricSeriesParams {
	return dbsqlc.MetricSeriesParams{StepSeconds: q.Step.Seconds(), Origin: q.Since, ByDim: q.By, Metric: q.Metric,
		Since: q.Since, Until: q.Until, Workflow: q.Workflow, Rule: q.Rule, Label: q.Label}
}

// MetricSeries returns q's counts and sums by bucket and group, in bucket
// order; buckets and groups without data are absent.
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
// bucket order.
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
		p := &out[n-1]
		for len(p.Buckets) < r.Ord {
			p.Buckets = append(p.Buckets, 0)
		}
		p.Buckets[r.Ord-1] += r.N
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
