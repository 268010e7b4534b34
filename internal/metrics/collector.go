package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// ScrapeTimeout bounds the database reads of one scrape.
const ScrapeTimeout = 5 * time.Second

// GaugeCap is where the waiting-requests and ready-jobs gauges stop
// counting, so that a scrape reads a bounded number of index entries however
// large a backlog grows: past it they read GaugeCap (an alert's threshold
// sits far below it). The oldest's age is exact at any size.
const GaugeCap = 10_000

// tiers are the tiers the waiting gauges report, each even when empty.
var tiers = func() []string {
	var out []string
	for _, t := range vocab.Tiers() {
		out = append(out, string(t))
	}
	return out
}()

// desc is how one stored metric is exposed: its Prometheus name, help, the
// names of the dimensions it fills (in store.MetricKey order: workflow, rule,
// tier, label) and whether it is a histogram or a counter of count or of sum.
type desc struct {
	metric string
	name   string
	help   string
	labels []string // names for workflow, rule, tier, label; "" skips one
	value  valueKind
}

type valueKind int

const (
	countOf valueKind = iota
	sumOf
	histogram
)

// exposed lists what a scrape shows, from the rollups. docs/OPERATIONS.md
// explains each and gives alerts.
var exposed = []desc{
	{store.MetricRunStarted, "countersign_runs_started_total", "Runs started.", []string{"workflow", "", "", ""}, countOf},
	{store.MetricRunFinished, "countersign_runs_finished_total", "Runs that reached a final status, by status.", []string{"workflow", "", "", "status"}, countOf},
	{store.MetricRunFinished, "countersign_run_duration_seconds", "Time from a run's start to its final status.", []string{"workflow", "", "", "status"}, histogram},
	{store.MetricStepSeconds, "countersign_step_duration_seconds", "Duration of steps' last attempts (counted when their run finishes), by kind.", []string{"workflow", "", "", "kind"}, histogram},
	{store.MetricStepTimeout, "countersign_step_timeouts_total", "Step attempts that ran out of time.", []string{"workflow", "", "", "kind"}, countOf},
	{store.MetricStepTimeoutRecovered, "countersign_step_timeouts_recovered_total", "Steps that timed out and later completed.", []string{"workflow", "", "", "kind"}, countOf},
	{store.MetricStepRetry, "countersign_step_retries_total", "Step attempts after the first (retries).", []string{"workflow", "", "", "kind"}, countOf},
	{store.MetricStepRetrySucceeded, "countersign_steps_retried_succeeded_total", "Steps that needed a retry and then completed.", []string{"workflow", "", "", "kind"}, countOf},
	{store.MetricStepRetryFailed, "countersign_steps_retried_failed_total", "Steps that needed a retry and failed in the end.", []string{"workflow", "", "", "kind"}, countOf},
	{store.MetricApproval, "countersign_approvals_total", "Actions judged by the policy: decided_by auto (the policy approved) or human (a person was asked).", []string{"workflow", "rule", "tier", "decided_by"}, countOf},
	{store.MetricDecisionSeconds, "countersign_decision_seconds", "Time from a request to a person's decision, by verdict.", []string{"workflow", "rule", "tier", "verdict"}, histogram},
	{store.MetricDeadline, "countersign_deadline_outcomes_total", "Requests whose deadline passed: approved, rejected or escalated.", []string{"workflow", "rule", "tier", "outcome"}, countOf},
	{store.MetricRollback, "countersign_rollbacks_total", "Rollbacks (compensation) started, by cause.", []string{"workflow", "", "", "cause"}, countOf},
	{store.MetricRollbackCompensated, "countersign_rollbacks_compensated_total", "Rollbacks that undid every effect, by cause.", []string{"workflow", "", "", "cause"}, countOf},
	{store.MetricRollbackFailed, "countersign_rollbacks_failed_total", "Rollbacks stopped by a failed undo (compensation_failed), by cause.", []string{"workflow", "", "", "cause"}, countOf},
	{store.MetricRollbackCompensated, "countersign_rollback_effects_undone_total", "Effects undone by completed rollbacks.", []string{"workflow", "", "", "cause"}, sumOf},
	{store.MetricRunUnusable, "countersign_runs_unusable_total", "Completed runs flagged unusable, by category.", []string{"workflow", "", "", "category"}, countOf},
	{store.MetricModelTokens, "countersign_model_tokens_total", "Model tokens used by finished runs' model steps.", []string{"workflow", "", "", "model"}, sumOf},
	{store.MetricModelTokens, "countersign_model_steps_total", "Model steps of finished runs.", []string{"workflow", "", "", "model"}, countOf},
}

// Gauges, read at scrape time from indexes that hold only what waits.
var (
	waitingDesc = prometheus.NewDesc("countersign_requests_waiting", "Approval requests waiting for a decision (counted up to 10000).", []string{"tier"}, nil)
	oldestDesc  = prometheus.NewDesc("countersign_requests_waiting_oldest_seconds", "Age of the oldest request waiting in the tier.", []string{"tier"}, nil)
	queueDesc   = prometheus.NewDesc("countersign_queue_latency_seconds", "How long the oldest job ready to run has waited for a worker (0: none waiting).", []string{"queue"}, nil)
	jobsDesc    = prometheus.NewDesc("countersign_queue_jobs_ready", "Jobs ready to run that no worker has picked up yet (counted up to 10000).", []string{"queue"}, nil)
	lagDesc     = prometheus.NewDesc("countersign_metrics_rollup_lag_seconds", "Age of the oldest finished run the metrics roller has not counted yet.", nil, nil)
	backlogDesc = prometheus.NewDesc("countersign_metrics_rollup_backlog", "Facts the roller has still to count: runs (finished runs) and audit (chained events).", []string{"source"}, nil)
	upDesc      = prometheus.NewDesc("countersign_metrics_up", "1 when the scrape read the database, 0 when it could not.", nil, nil)
)

// Collector exposes the rollups and the gauges. Each scrape reads
// metric_totals (one row per label combination), the waiting-requests
// partial index, River's backlog and the roller's queue.
type Collector struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger
	// Queues are River queues always reported (latency 0 when empty).
	Queues []string
	descs  map[string]*prometheus.Desc
}

// NewCollector returns a collector over pool.
func NewCollector(pool *pgxpool.Pool, logger *slog.Logger, queues ...string) *Collector {
	c := &Collector{Pool: pool, Logger: logger, Queues: queues, descs: map[string]*prometheus.Desc{}}
	for _, d := range exposed {
		var names []string
		for _, l := range d.labels {
			if l != "" {
				names = append(names, l)
			}
		}
		c.descs[d.name] = prometheus.NewDesc(d.name, d.help, names, nil)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{waitingDesc, oldestDesc, queueDesc, jobsDesc, lagDesc, backlogDesc, upDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), ScrapeTimeout)
	defer cancel()
	if err := c.collect(ctx, ch); err != nil {
		if c.Logger != nil {
			c.Logger.Error("metrics scrape", "err", err)
		}
		ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, 1)
}

func (c *Collector) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	// The four reads are independent: run at once, a scrape waits for the
	// slowest round trip instead of their sum.
	var (
		totals  []store.MetricRow
		waiting []store.Waiting
		queues  []store.QueueBacklog
		backlog store.Backlog
		errs    [4]error
		wg      sync.WaitGroup
	)
	wg.Go(func() { totals, errs[0] = store.MetricTotals(ctx, c.Pool) })
	wg.Go(func() { waiting, errs[1] = store.MetricWaiting(ctx, c.Pool, tiers, GaugeCap) })
	wg.Go(func() { queues, errs[2] = store.MetricQueues(ctx, c.Pool, c.Queues, GaugeCap) })
	wg.Go(func() { backlog, errs[3] = store.MetricBacklog(ctx, c.Pool) })
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}

	byMetric := map[string][]store.MetricRow{}
	for _, r := range totals {
		byMetric[r.Metric] = append(byMetric[r.Metric], r)
	}
	for _, d := range exposed {
		pd := c.descs[d.name]
		for _, r := range byMetric[d.metric] {
			labels := labelValues(d.labels, r.MetricKey)
			switch d.value {
			case countOf:
				ch <- prometheus.MustNewConstMetric(pd, prometheus.CounterValue, float64(r.Count), labels...)
			case sumOf:
				ch <- prometheus.MustNewConstMetric(pd, prometheus.CounterValue, r.Sum, labels...)
			case histogram:
				ch <- prometheus.MustNewConstHistogram(pd, uint64(r.Count), r.Sum, cumulative(store.MetricBounds(d.metric), r.Buckets), labels...)
			}
		}
	}

	// Every tier, 0 when nothing waits in it, so that alerts see the series.
	for _, w := range waiting {
		ch <- prometheus.MustNewConstMetric(waitingDesc, prometheus.GaugeValue, float64(w.Count), w.Tier)
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, max(w.OldestAge.Seconds(), 0), w.Tier)
	}
	for _, q := range queues {
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, max(q.OldestSeconds, 0), q.Queue)
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(q.Available), q.Queue)
	}
	ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, backlog.RunsLag.Seconds())
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(backlog.RunsQueued), "runs")
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(backlog.AuditBehind), "audit")
	return nil
}

// labelValues picks the key's values for the label names that are set.
func labelValues(names []string, k store.MetricKey) []string {
	all := []string{k.Workflow, k.Rule, k.Tier, k.Label}
	var out []string
	for i, n := range names {
		if n != "" {
			out = append(out, all[i])
		}
	}
	return out
}

// cumulative turns stored (non-cumulative) bucket counts into Prometheus's
// cumulative ones by upper bound; the last stored element is +Inf's, which
// Prometheus derives from the count.
func cumulative(bounds []float64, buckets []int64) map[float64]uint64 {
	out := make(map[float64]uint64, len(bounds))
	var sum uint64
	for i, b := range bounds {
		if i < len(buckets) {
			sum += uint64(max(buckets[i], 0))
		}
		out[b] = sum
	}
	return out
}

// Handler serves the collector in Prometheus's text format, on a registry of
// its own (plus the Go runtime and process collectors).
func Handler(c *Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil, ErrorHandling: promhttp.ContinueOnError})
}
