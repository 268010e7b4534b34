package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store/dbsqlc"
)

// Metrics rollups (migration 24). The roller (internal/metrics) folds the
// audit chain and finished runs into per-hour rows (metric_hours, the
// dashboard's) and totals (metric_totals, a scrape's), keyed by a metric name
// below and its dimensions. A scrape and the dashboard read only these, the
// gauges' partial indexes and River's fetching index: never the big tables.
//
// The metric names, with the dimensions each fills (the others are ""), what
// count and sum hold, and whether it has a histogram (MetricBounds):
const (
	// MetricRunStarted: runs started. workflow. count.
	MetricRunStarted = "run_started"
	// MetricRunFinished: runs that reached a final status. workflow, label =
	// the status. count; sum and histogram: seconds from creation to the end.
	MetricRunFinished = "run_finished"
	// MetricStepSeconds: steps of finished runs. workflow, label = the step
	// kind. count; sum and histogram: seconds of the step's last attempt.
	MetricStepSeconds = "step_seconds"
	// MetricStepTimeout: step attempts that ran out of time. workflow, label = kind.
	MetricStepTimeout = "step_timeout"
	// MetricStepTimeoutRecovered: steps that timed out at least once and
	// then completed. workflow, label = kind.
	MetricStepTimeoutRecovered = "step_timeout_recovered"
	// MetricStepRetry: retries (attempts after the first). workflow, label = kind.
	MetricStepRetry = "step_retry"
	// MetricStepRetrySucceeded and MetricStepRetryFailed: steps that needed
	// more than one attempt, by how they ended. workflow, label = kind.
	MetricStepRetrySucceeded = "step_retry_succeeded"
	MetricStepRetryFailed    = "step_retry_failed"
	// MetricApproval: actions judged by the policy. workflow, rule, tier,
	// label = "auto" (approved by the policy) or "human" (a person was asked).
	MetricApproval = "approval"
	// MetricDecisionSeconds: decisions by people. workflow, rule, tier, label
	// = the verdict. count; sum and histogram: seconds from the request to
	// the decision.
	MetricDecisionSeconds = "decision_seconds"
	// MetricDeadline: deadlines that passed. workflow, rule, tier, label =
	// "approved", "rejected" or "escalated".
	MetricDeadline = "deadline"
	// MetricRollback: rollbacks started. workflow, label = the cause
	// (failed, rejected, cancelled). count; sum: undos planned.
	MetricRollback = "rollback"
	// MetricRollbackCompensated and MetricRollbackFailed: rollbacks ended.
	// workflow, label = the cause. count; sum: effects undone.
	MetricRollbackCompensated = "rollback_compensated"
	MetricRollbackFailed      = "rollback_failed"
	// MetricRunUnusable: completed runs flagged unusable. workflow, label = the category.
	MetricRunUnusable = "run_unusable"
	// MetricModelTokens: model calls of finished runs. workflow, label = the
	// model ("" if the provider named none). count: calls; sum: tokens.
	MetricModelTokens = "model_tokens"
)

// Metrics lists every metric name.
var Metrics = []string{MetricRunStarted, MetricRunFinished, MetricStepSeconds, MetricStepTimeout,
	MetricStepTimeoutRecovered, MetricStepRetry, MetricStepRetrySucceeded, MetricStepRetryFailed,
	MetricApproval, MetricDecisionSeconds, MetricDeadline, MetricRollback, MetricRollbackCompensated,
	MetricRollbackFailed, MetricRunUnusable, MetricModelTokens}

// The upper bounds (seconds) of the histograms' buckets. They are part of the
// stored data: a row's buckets[i] counts values ≤ bounds[i] (and > bounds[i-1]),
// its last element the values above every bound. Changing a list needs a
// migration that resets the metric's rows.
var (
	stepBounds     = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400}
	decisionBounds = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400, 259200, 604800}
	runBounds      = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 259200, 604800}
)

// MetricBounds returns the histogram bounds of a metric, nil for a metric
// without a histogram.
func MetricBounds(metric string) []float64 {
	switch metric {
	case MetricStepSeconds:
		return stepBounds
	case MetricDecisionSeconds:
		return decisionBounds
	case MetricRunFinished:
		return runBounds
	}
	return nil
}

// MetricKey is a metric and its dimensions ("" where it has none).
type MetricKey struct {
	Metric   string
	Workflow string
	Rule     string
	Tier     string
	Label    string
}

// MetricValue is what a key counted: how many facts, the sum of their values
// and, for a metric with bounds, their histogram (non-cumulative, one more
// element than the bounds).
type MetricValue struct {
	Count   int64
	Sum     float64
	Buckets []int64
}

// Observe adds one fact of value x to v, in the histogram of metric if it has one.
func (v *MetricValue) Observe(metric string, x float64) {
	v.Count++
	v.Sum += x
	bounds := MetricBounds(metric)
	if bounds == nil {
		return
	}
	if len(v.Buckets) != len(bounds)+1 {
		v.Buckets = make([]int64, len(bounds)+1)
	}
	v.Buckets[sort.SearchFloat64s(bounds, x)]++
}

// Add adds w to v.
func (v *MetricValue) Add(w MetricValue) {
	v.Count += w.Count
	v.Sum += w.Sum
	if len(w.Buckets) > len(v.Buckets) {
		v.Buckets = append(v.Buckets, make([]int64, len(w.Buckets)-len(v.Buckets))...)
	}
	for i, b := range w.Buckets {
		v.Buckets[i] += b
	}
}

// MetricRow is one rolled-up row: a key's value in one hour (Hour is zero
// for a total).
type MetricRow struct {
	MetricKey
	Hour time.Time
	MetricValue
}

// MetricAdd adds v to key's rows for the hour and the day (UTC) containing at
// and to its total, in one statement. The roller calls it in its folding
// transaction, so the three tables move together or not at all.
func MetricAdd(ctx context.Context, db DBTX, at time.Time, key MetricKey, v MetricValue) error {
	buckets := v.Buckets
	if buckets == nil {
		buckets = []int64{}
	}
	err := queries.MetricAdd(ctx, db, dbsqlc.MetricAddParams{BucketHour: at.UTC().Truncate(time.Hour), BucketDay: DayOf(at), Metric: key.Metric,
		Workflow: key.Workflow, Rule: key.Rule, Tier: key.Tier, Label: key.Label, Count: v.Count, Sum: v.Sum, Buckets: buckets})
	if err != nil {
		return fmt.Errorf("add to metric %s: %w", key.Metric, interpret(err))
	}
	return nil
}

// MetricTotals returns every key's total since the beginning: what a scrape
// exposes. Its size is the number of label combinations.
func MetricTotals(ctx context.Context, db DBTX) ([]MetricRow, error) {
	rows, err := queries.MetricTotals(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("read metric totals: %w", interpret(err))
	}
	out := make([]MetricRow, len(rows))
	for i, r := range rows {
		out[i] = MetricRow{MetricKey: MetricKey{r.Metric, r.Workflow, r.Rule, r.Tier, r.Label},
			MetricValue: MetricValue{Count: r.Count, Sum: r.Sum, Buckets: r.Buckets}}
	}
	return out, nil
}

// MetricRange selects hourly rows: the given metrics, hours in [Since,
// Until), and only Workflow's when it is not "".
type MetricRange struct {
	Metrics  []string
	Since    time.Time
	Until    time.Time
	Workflow string
}

// MetricHours returns the hourly rows in r, by metric, hour and key: the
// dashboard's series. A month is at most 720 rows per key.
func MetricHours(ctx context.Context, db DBTX, r MetricRange) ([]MetricRow, error) {
	rows, err := queries.MetricHours(ctx, db, dbsqlc.MetricHoursParams{Metrics: r.Metrics, Since: r.Since, Until: r.Until, Workflow: r.Workflow})
	if err != nil {
		return nil, fmt.Errorf("read metric hours: %w", interpret(err))
	}
	out := make([]MetricRow, len(rows))
	for i, r := range rows {
		out[i] = MetricRow{MetricKey: MetricKey{r.Metric, r.Workflow, r.Rule, r.Tier, r.Label}, Hour: r.Hour,
			MetricValue: MetricValue{Count: r.Count, Sum: r.Sum, Buckets: r.Buckets}}
	}
	return out, nil
}

// MetricHoursPrune deletes the hourly rows before before, and the daily rows
// of the days that end at or before it (totals stay), and returns how many
// rows it deleted.
func MetricHoursPrune(ctx context.Context, db DBTX, before time.Time) (int64, error) {
	n, err := queries.MetricHoursPrune(ctx, db, before)
	if err != nil {
		return 0, fmt.Errorf("prune metric hours: %w", interpret(err))
	}
	d, err := queries.MetricDaysPrune(ctx, db, before)
	if err != nil {
		return n, fmt.Errorf("prune metric days: %w", interpret(err))
	}
	return n + d, nil
}

// DayOf returns the start (UTC midnight) of the day containing t: the day
// of metric_days that t's facts are added to.
func DayOf(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// MetricRollLock takes the roller's transaction-scoped advisory lock if no
// other transaction holds it, and says whether it did.
func MetricRollLock(ctx context.Context, tx pgx.Tx) (bool, error) {
	ok, err := queries.MetricRollLock(ctx, tx)
	if err != nil {
		return false, fmt.Errorf("metrics roll lock: %w", interpret(err))
	}
	return ok, nil
}

// MetricCursorAudit is the cursor over the audit chain (the last seq folded).
const MetricCursorAudit = "audit"

// MetricCursorGet returns a cursor's position, locking it until tx ends.
// Returns ErrNotFound for an unknown cursor.
func MetricCursorGet(ctx context.Context, db DBTX, name string) (int64, error) {
	pos, err := queries.MetricCursorGet(ctx, db, name)
	if err != nil {
		return 0, fmt.Errorf("read metric cursor %s: %w", name, interpret(err))
	}
	return pos, nil
}

// MetricCursorSet moves a cursor.
func MetricCursorSet(ctx context.Context, db DBTX, name string, position int64) error {
	err := queries.MetricCursorSet(ctx, db, dbsqlc.MetricCursorSetParams{Name: name, Position: position})
	if err != nil {
		return fmt.Errorf("move metric cursor %s: %w", name, interpret(err))
	}
	return nil
}

// MetricAuditEvent is a chained audit event the metrics count.
type MetricAuditEvent struct {
	Seq     int64
	At      time.Time
	Actor   string
	Kind    string
	RunID   string
	Details json.RawMessage
}

// MetricAuditAfter returns the chained events of the given kinds among the
// limit positions after seq after, in chain order, and the last chained seq
// among those positions (after itself when none is chained yet): where the
// cursor moves once they are folded.
//
// The last position is read first and the events up to it after: each
// statement sees the chain as of its own start, and chain rows become
// visible as a prefix (chaining passes hold one lock through their
// commits), so every position up to last is there for the second read. The
// other order let a pass that committed between the two move the cursor
// past events that were never read.
func MetricAuditAfter(ctx context.Context, db DBTX, after int64, limit int, kinds []string) ([]MetricAuditEvent, int64, error) {
	last, err := queries.MetricAuditLast(ctx, db, dbsqlc.MetricAuditLastParams{After: after, RowLimit: int64(limit)})
	if err != nil {
		return nil, 0, fmt.Errorf("read audit for metrics: %w", interpret(err))
	}
	if last <= after {
		return nil, after, nil
	}
	rows, err := queries.MetricAuditAfter(ctx, db, dbsqlc.MetricAuditAfterParams{After: after, RowLimit: last - after, Kinds: kinds})
	if err != nil {
		return nil, 0, fmt.Errorf("read audit for metrics: %w", interpret(err))
	}
	out := make([]MetricAuditEvent, len(rows))
	for i, r := range rows {
		out[i] = MetricAuditEvent{Seq: r.Seq, At: r.At, Actor: r.Actor, Kind: r.Kind, Details: r.Details}
		if r.RunID != nil {
			out[i].RunID = *r.RunID
		}
	}
	return out, last, nil
}

// MetricRunQueueTake removes up to limit finished runs from the queue the
// trigger fills, oldest first, skipping ids another transaction holds, and
// returns them; they are back in the queue if tx rolls back.
func MetricRunQueueTake(ctx context.Context, db DBTX, limit int) ([]string, error) {
	ids, err := queries.MetricRunQueueTake(ctx, db, int32(limit))
	if err != nil {
		return nil, fmt.Errorf("take finished runs: %w", interpret(err))
	}
	return ids, nil
}

// MetricRun is what the metrics read of a run.
type MetricRun struct {
	ID         string
	Workflow   string
	Status     string
	CreatedAt  time.Time
	FinishedAt time.Time // updated_at when the run has no finish time
}

// MetricRuns returns the runs with the given ids (those that exist).
func MetricRuns(ctx context.Context, db DBTX, ids []string) ([]MetricRun, error) {
	rows, err := queries.MetricRunsFinished(ctx, db, ids)
	if err != nil {
		return nil, fmt.Errorf("read runs for metrics: %w", interpret(err))
	}
	out := make([]MetricRun, len(rows))
	for i, r := range rows {
		out[i] = MetricRun{ID: r.ID, Workflow: r.Workflow, Status: r.Status, CreatedAt: r.CreatedAt, FinishedAt: r.UpdatedAt}
		if r.FinishedAt != nil {
			out[i].FinishedAt = *r.FinishedAt
		}
	}
	return out, nil
}

// MetricStep is what the metrics read of a step.
type MetricStep struct {
	RunID      string
	Seq        int
	Kind       string
	Status     string
	Attempts   int
	Tokens     int
	Model      string
	StartedAt  time.Time
	FinishedAt *time.Time
}

// MetricRunSteps returns the steps of the given runs.
func MetricRunSteps(ctx context.Context, db DBTX, ids []string) ([]MetricStep, error) {
	rows, err := queries.MetricRunSteps(ctx, db, ids)
	if err != nil {
		return nil, fmt.Errorf("read steps for metrics: %w", interpret(err))
	}
	out := make([]MetricStep, len(rows))
	for i, r := range rows {
		out[i] = MetricStep{RunID: r.RunID, Seq: r.Seq, Kind: r.Kind, Status: r.Status, Attempts: r.Attempts,
			Tokens: r.Tokens, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt}
		if r.Model != nil {
			out[i].Model = *r.Model
		}
	}
	return out, nil
}

// MetricRunAttempts returns the failed step attempts of the given runs.
func MetricRunAttempts(ctx context.Context, db DBTX, ids []string) ([]StepAttempt, error) {
	rows, err := queries.MetricRunAttempts(ctx, db, ids)
	if err != nil {
		return nil, fmt.Errorf("read attempts for metrics: %w", interpret(err))
	}
	out := make([]StepAttempt, len(rows))
	for i, r := range rows {
		out[i] = StepAttempt{RunID: r.RunID, Seq: r.Seq, Attempt: r.Attempt, Error: r.Error, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt}
	}
	return out, nil
}

// Waiting is the gauge of one tier's pending requests.
type Waiting struct {
	Tier string
	// Count is exact up to the cap MetricWaiting was given, the cap beyond.
	Count int64
	// OldestAge is how long the oldest has waited, 0 when none waits.
	OldestAge time.Duration
}

// MetricWaiting returns each tier's pending requests, counted up to cap, and
// the age of the oldest, from a partial index over pending
// requests only: it reads at most cap+1 index entries per tier.
func MetricWaiting(ctx context.Context, db DBTX, tiers []string, limit int64) ([]Waiting, error) {
	rows, err := queries.MetricWaiting(ctx, db, dbsqlc.MetricWaitingParams{Tiers: tiers, Cap: limit})
	if err != nil {
		return nil, fmt.Errorf("count waiting requests: %w", interpret(err))
	}
	out := make([]Waiting, len(rows))
	for i, r := range rows {
		out[i] = Waiting{Tier: r.Tier, Count: r.Waiting, OldestAge: time.Duration(r.OldestSeconds * float64(time.Second))}
	}
	return out, nil
}

// Backlog is what the roller has still to fold.
type Backlog struct {
	RunsQueued int64
	// RunsLag is how long the oldest queued run has waited (0 for none).
	RunsLag time.Duration
	// AuditBehind counts chained audit events past the cursor.
	AuditBehind int64
}

// MetricBacklog returns the roller's backlog.
func MetricBacklog(ctx context.Context, db DBTX) (Backlog, error) {
	r, err := queries.MetricBacklog(ctx, db)
	if err != nil {
		return Backlog{}, fmt.Errorf("read metrics backlog: %w", interpret(err))
	}
	return Backlog{RunsQueued: r.RunsQueued, RunsLag: time.Duration(r.RunsLagSeconds * float64(time.Second)), AuditBehind: r.AuditBehind}, nil
}

//go:embed sql/MetricQueues.sql
var metricQueuesSQL string

// QueueBacklog is one River queue's jobs ready to run (exact up to the cap
// MetricQueues was given) and how long ago the oldest became due (0: none).
type QueueBacklog struct {
	Queue         string  `db:"queue"`
	Available     int64   `db:"available"`
	OldestSeconds float64 `db:"oldest_seconds"`
}

// MetricQueues returns the backlog of the queues River lists and of those
// named, counting at most limit jobs per queue.
func MetricQueues(ctx context.Context, db DBTX, queues []string, limit int64) ([]QueueBacklog, error) {
	if queues == nil {
		queues = []string{}
	}
	rows, err := db.Query(ctx, metricQueuesSQL, pgx.NamedArgs{"queues": queues, "cap": limit})
	if err != nil {
		return nil, fmt.Errorf("read queue backlog: %w", interpret(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[QueueBacklog])
	if err != nil {
		return nil, fmt.Errorf("read queue backlog: %w", interpret(err))
	}
	return out, nil
}
