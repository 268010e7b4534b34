// Package dashboard builds the console's dashboard: charts over the last
// day, week or month of the measures the metrics roller keeps (runs by
// outcome, human intervention by rule, time to decision by tier, deadline
// outcomes, step timeouts and retries, rollbacks, unusable runs, model
// tokens), for all workflows and rules or for one of each. It reads only
// the hourly rollups (metric_hours) and the gauges' small queries, so a page
// costs the same at a thousand runs as at a million.
package dashboard

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/countersign/countersign/internal/chart"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Window is a period the dashboard shows.
type Window string

const (
	Day   Window = "day"
	Week  Window = "week"
	Month Window = "month"
)

// Windows lists the periods, for the menu.
func Windows() []Window { return []Window{Day, Week, Month} }

// Label is the menu's text for w.
func (w Window) Label() string {
	switch w {
	case Week:
		return "Last 7 days"
	case Month:
		return "Last 30 days"
	}
	return "Last 24 hours"
}

// Bucket names what one bar or point of w covers.
func (w Window) Bucket() string {
	if w == Week || w == Month {
		return "day"
	}
	return "hour"
}

// ParseWindow returns the window named s ("" is Day) or an error.
func ParseWindow(s string) (Window, error) {
	switch Window(s) {
	case "", Day:
		return Day, nil
	case Week, Month:
		return Window(s), nil
	}
	return "", fmt.Errorf("window must be day, week or month")
}

// Filter is what the page is asked for.
type Filter struct {
	Window   Window
	Workflow string // "" for all
	Rule     string // "" for all; only the measures that have a rule use it
}

// Gauge is a figure of now, not of the period.
type Gauge struct {
	ID    string
	Label string
	Value string
	Note  string
}

// View is the dashboard.
type View struct {
	Filter    Filter
	Workflows []string // the menus
	Rules     []string
	Since     time.Time
	Until     time.Time
	Charts    []chart.Chart
	Gauges    []Gauge
	// RuleWide names the charts that ignore the rule filter (their measure
	// has no rule), so the page can say so.
	RuleWide map[string]bool
}

// span is a window's buckets: n of step from since, the last one ending at
// until (now), so that its figures are as far as the roller has folded.
type span struct {
	since, until time.Time
	step         time.Duration
	n            int
	label        func(time.Time) string
}

// spanOf returns w's buckets at now. The day is 24 hours, the current one
// included; the week and month are 7 and 30 calendar days (UTC), today
// included, in whole days: their whole days come from the daily rollups and
// only today's hours from the hourly ones (store.SeriesQuery).
func spanOf(w Window, now time.Time) span {
	now = now.UTC()
	switch w {
	case Week:
		since := store.DayOf(now).AddDate(0, 0, -6)
		return span{since: since, until: now, step: 24 * time.Hour, n: 7,
			label: func(t time.Time) string { return t.Format("Mon 02") }}
	case Month:
		since := store.DayOf(now).AddDate(0, 0, -29)
		return span{since: since, until: now, step: 24 * time.Hour, n: 30,
			label: func(t time.Time) string { return t.Format("Jan 02") }}
	}
	since := now.Truncate(time.Hour).Add(-23 * time.Hour)
	return span{since: since, until: now, step: time.Hour, n: 24,
		label: func(t time.Time) string { return t.Format("15:04") }}
}

func (s span) labels() []string {
	out := make([]string, s.n)
	for i := range out {
		out[i] = s.label(s.since.Add(time.Duration(i) * s.step))
	}
	return out
}

// index is the bucket of t, or -1 outside the span.
func (s span) index(t time.Time) int {
	i := int(t.Sub(s.since) / s.step)
	if i < 0 || i >= s.n {
		return -1
	}
	return i
}

// Build reads the rollups and returns the dashboard for f at now.
func Build(ctx context.Context, db store.DBTX, f Filter, now time.Time) (*View, error) {
	sp := spanOf(f.Window, now)
	v := &View{Filter: f, Since: sp.since, Until: sp.until, RuleWide: map[string]bool{}}
	var err error
	if v.Workflows, err = store.MetricWorkflowNames(ctx, db); err != nil {
		return nil, err
	}
	if v.Rules, err = store.MetricRuleNames(ctx, db); err != nil {
		return nil, err
	}
	b := builder{ctx: ctx, db: db, f: f, sp: sp, labels: sp.labels()}
	for _, p := range panels {
		c, err := p.build(&b)
		if err != nil {
			return nil, fmt.Errorf("dashboard %s: %w", p.id, err)
		}
		c.ID, c.Title, c.Labels = p.id, p.title, b.labels
		if p.wordsFunc != nil {
			for i := range c.Series {
				c.Series[i].Name = p.wordsFunc(c.Series[i].Name)
			}
		}
		if f.Rule != "" && !p.byRule {
			v.RuleWide[p.id] = true
		}
		v.Charts = append(v.Charts, c)
	}
	if v.Gauges, err = gauges(ctx, db); err != nil {
		return nil, err
	}
	return v, nil
}

type builder struct {
	ctx    context.Context
	db     store.DBTX
	f      Filter
	sp     span
	labels []string
}

func (b *builder) query(metric, by, label string, byRule bool) store.SeriesQuery {
	q := store.SeriesQuery{Metric: metric, Since: b.sp.since, Until: b.sp.until, Step: b.sp.step, By: by,
		Workflow: b.f.Workflow, Label: label}
	if byRule {
		q.Rule = b.f.Rule
	}
	return q
}

// counts returns one series per group of metric (by by): the count, or the
// sum when sum is set, per bucket; groups ordered by their total, largest
// first, at most six (the rest summed as "other").
func (b *builder) counts(metric, by, label string, byRule, sum bool) ([]chart.Series, error) {
	byGroup, err := b.groups(metric, by, label, byRule, sum)
	if err != nil {
		return nil, err
	}
	return topSeries(byGroup, 6), nil
}

// groups returns metric's values per group (by by) and bucket.
func (b *builder) groups(metric, by, label string, byRule, sum bool) (map[string][]float64, error) {
	pts, err := store.MetricSeries(b.ctx, b.db, b.query(metric, by, label, byRule))
	if err != nil {
		return nil, err
	}
	byGroup := map[string][]float64{}
	for _, p := range pts {
		i := b.sp.index(p.Bucket)
		if i < 0 {
			continue
		}
		vs := byGroup[p.Group]
		if vs == nil {
			vs = make([]float64, b.sp.n)
			byGroup[p.Group] = vs
		}
		if sum {
			vs[i] += p.Sum
		} else {
			vs[i] += float64(p.Count)
		}
	}
	return byGroup, nil
}

func topSeries(byGroup map[string][]float64, max int) []chart.Series {
	out := make([]chart.Series, 0, len(byGroup))
	for g, vs := range byGroup {
		out = append(out, chart.Series{Name: groupName(g), Values: vs})
	}
	total := func(s chart.Series) float64 {
		t := 0.0
		for _, v := range s.Values {
			t += v
		}
		return t
	}
	sort.Slice(out, func(i, j int) bool {
		ti, tj := total(out[i]), total(out[j])
		if ti != tj {
			return ti > tj
		}
		return out[i].Name < out[j].Name
	})
	if len(out) > max {
		other := chart.Series{Name: "other", Values: make([]float64, len(out[0].Values))}
		for _, s := range out[max-1:] {
			for i, v := range s.Values {
				other.Values[i] += v
			}
		}
		out = append(out[:max-1], other)
	}
	return out
}

func groupName(g string) string {
	if g == "" {
		return "unnamed"
	}
	return g
}

// quantiles returns, per group, the q-quantile of metric's histogram per
// bucket (NaN where a bucket has no facts), in seconds.
func (b *builder) quantiles(metric, by string, byRule bool, qs ...float64) (map[string][][]float64, error) {
	pts, err := store.MetricHistogramSeries(b.ctx, b.db, b.query(metric, by, "", byRule))
	if err != nil {
		return nil, err
	}
	bounds := store.MetricBounds(metric)
	out := map[string][][]float64{}
	for _, p := range pts {
		i := b.sp.index(p.Bucket)
		if i < 0 {
			continue
		}
		rows := out[p.Group]
		if rows == nil {
			rows = make([][]float64, len(qs))
			for k := range rows {
				rows[k] = nanSlice(b.sp.n)
			}
			out[p.Group] = rows
		}
		for k, q := range qs {
			rows[k][i] = Quantile(bounds, p.Buckets, q)
		}
	}
	return out, nil
}

func nanSlice(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = math.NaN()
	}
	return s
}

// Quantile estimates the q-quantile of a histogram (non-cumulative counts per
// upper bound, the last above every bound) by linear interpolation inside the
// bucket it falls in, as Prometheus's histogram_quantile does; a quantile in
// the open last bucket is its lower bound. NaN for an empty histogram.
func Quantile(bounds []float64, counts []int64, q float64) float64 {
	var total int64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return math.NaN()
	}
	rank := q * float64(total)
	var seen int64
	for i, c := range counts {
		if c == 0 {
			continue
		}
		if float64(seen+c) >= rank {
			if i >= len(bounds) {
				return bounds[len(bounds)-1]
			}
			lo := 0.0
			if i > 0 {
				lo = bounds[i-1]
			}
			return lo + (bounds[i]-lo)*(rank-float64(seen))/float64(c)
		}
		seen += c
	}
	return bounds[len(bounds)-1]
}

// seconds scales series of seconds to the unit that reads best for their
// largest value.
func seconds(ss []chart.Series) ([]chart.Series, string) {
	max := 0.0
	for _, s := range ss {
		for _, v := range s.Values {
			if !math.IsNaN(v) {
				max = math.Max(max, v)
			}
		}
	}
	div, unit := 1.0, "s"
	switch {
	case max >= 2*3600:
		div, unit = 3600, "hours"
	case max >= 120:
		div, unit = 60, "minutes"
	case max < 1:
		div, unit = 0.001, "ms"
	}
	for _, s := range ss {
		for i, v := range s.Values {
			s.Values[i] = v / div
		}
	}
	return ss, unit
}

// gaugeCap is where the gauges stop counting (as /metrics's do): reading
// more index entries would make the page's cost grow with a backlog.
const gaugeCap = 10_000

func count(n int64) string {
	if n >= gaugeCap {
		return fmt.Sprintf("%d+", gaugeCap)
	}
	return fmt.Sprint(n)
}

func gauges(ctx context.Context, db store.DBTX) ([]Gauge, error) {
	tiers := make([]string, 0, len(vocab.Tiers()))
	for _, t := range vocab.Tiers() {
		if t != vocab.TierAuto {
			tiers = append(tiers, string(t))
		}
	}
	waiting, err := store.MetricWaiting(ctx, db, tiers, gaugeCap)
	if err != nil {
		return nil, err
	}
	var out []Gauge
	var total int64
	var oldest time.Duration
	for _, w := range waiting {
		total += w.Count
		oldest = max(oldest, w.OldestAge)
		g := Gauge{ID: "waiting-" + w.Tier, Label: "Waiting, " + w.Tier, Value: count(w.Count)}
		if w.Count > 0 {
			g.Note = "oldest " + age(w.OldestAge)
		}
		out = append(out, g)
	}
	g := Gauge{ID: "waiting", Label: "Waiting for a person", Value: count(total)}
	if total > 0 {
		g.Note = "oldest " + age(oldest)
	}
	out = append([]Gauge{g}, out...)
	queues, err := store.MetricQueues(ctx, db, nil, gaugeCap)
	if err != nil {
		return nil, err
	}
	var ready int64
	var late float64
	for _, q := range queues {
		ready += q.Available
		late = max(late, q.OldestSeconds)
	}
	qg := Gauge{ID: "queue", Label: "Jobs ready to run", Value: count(ready)}
	if ready > 0 {
		qg.Note = "oldest due " + age(time.Duration(late*float64(time.Second))) + " ago"
	}
	out = append(out, qg)
	return out, nil
}

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours())/24)
}
