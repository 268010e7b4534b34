// Package metrics keeps Countersign's operational measures and exposes them:
// the Roller folds the audit chain and finished runs into the rollup tables
// (migration 24, store.Metric*), and the Collector serves those tables and a
// few indexed gauges to Prometheus. A scrape reads rollups and partial
// indexes, never the runs, steps or audit tables, so it costs the same at a
// million runs as at ten (docs/OPERATIONS.md lists every metric).
package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Defaults of a Roller.
const (
	DefaultInterval  = time.Second
	DefaultRetention = 400 * 24 * time.Hour
	// auditBatch is how many chain positions one pass reads; runBatch how
	// many finished runs it folds (with their steps and attempts).
	auditBatch = 2000
	runBatch   = 500
)

// Roller folds new facts into the rollups. Every worker process runs one
// (RunRoller); an advisory lock lets one of them fold at a time, and each
// pass moves its cursors in the transaction that adds what it read, so a
// crash or a concurrent roller never counts a fact twice or loses one.
type Roller struct {
	Pool *pgxpool.Pool
	// Retention is how long hourly rows are kept (totals are kept for
	// ever); DefaultRetention when zero.
	Retention time.Duration
	Logger    *slog.Logger
	lastPrune time.Time
}

// Rolled is what one pass folded.
type Rolled struct {
	// Locked is false when another process was folding: nothing was read.
	Locked bool
	Events int // audit events counted
	Runs   int // finished runs counted
	// More says the pass stopped at a batch limit: call Roll again.
	More bool
}

// Roll folds one batch of each source in one transaction.
func (r *Roller) Roll(ctx context.Context) (Rolled, error) {
	out, err := store.WithTxV(ctx, r.Pool, func(ctx context.Context, tx pgx.Tx) (Rolled, error) {
		var out Rolled
		ok, err := store.MetricRollLock(ctx, tx)
		if err != nil || !ok {
			return out, err
		}
		out.Locked = true
		f := folder{adds: map[hourKey]*store.MetricValue{}}

		pos, err := store.MetricCursorGet(ctx, tx, store.MetricCursorAudit)
		if err != nil {
			return out, err
		}
		events, last, err := store.MetricAuditAfter(ctx, tx, pos, auditBatch, auditKinds)
		if err != nil {
			return out, err
		}
		if err := f.events(ctx, tx, events); err != nil {
			return out, err
		}
		out.Events = len(events)
		out.More = last >= pos+auditBatch

		ids, err := store.MetricRunQueueTake(ctx, tx, runBatch)
		if err != nil {
			return out, err
		}
		if err := f.runs(ctx, tx, ids); err != nil {
			return out, err
		}
		out.Runs = len(ids)
		out.More = out.More || len(ids) == runBatch

		if err := f.write(ctx, tx); err != nil {
			return out, err
		}
		if last != pos {
			if err := store.MetricCursorSet(ctx, tx, store.MetricCursorAudit, last); err != nil {
				return out, err
			}
		}
		return out, nil
	})
	if err != nil {
		return Rolled{}, fmt.Errorf("fold metrics: %w", err)
	}
	if out.Locked && time.Since(r.lastPrune) > time.Hour {
		retention := r.Retention
		if retention <= 0 {
			retention = DefaultRetention
		}
		if _, err := store.MetricHoursPrune(ctx, r.Pool, time.Now().Add(-retention).Truncate(time.Hour)); err != nil {
			return out, err
		}
		r.lastPrune = time.Now()
	}
	return out, nil
}

// RollAll rolls until nothing is left to fold (or another process holds the
// lock) and returns how many events and runs it folded.
func (r *Roller) RollAll(ctx context.Context) (Rolled, error) {
	var total Rolled
	for {
		got, err := r.Roll(ctx)
		if err != nil {
			return total, err
		}
		total.Locked = total.Locked || got.Locked
		total.Events += got.Events
		total.Runs += got.Runs
		if !got.More {
			return total, nil
		}
	}
}

// RunRoller folds every interval until ctx ends.
func (r *Roller) RunRoller(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	logger := r.Logger
	if logger == nil {
		logger = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.RollAll(ctx); err != nil && ctx.Err() == nil {
			logger.Error("metrics rollup", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// auditKinds are the audit events the metrics count.
var auditKinds = []string{string(audit.KindRunStarted), string(audit.KindApprovalRequested), string(audit.KindDecisionAuto),
	string(audit.KindDecisionRecorded), string(audit.KindRequestEscalated), string(audit.KindRunCompensating),
	string(audit.KindRunCompensated), string(audit.KindRunCompensationFailed), string(audit.KindRunFlaggedUnusable)}

type hourKey struct {
	hour time.Time
	store.MetricKey
}

// folder sums a pass's facts per hour and key before writing them, so that a
// batch costs one statement per key it touched, not one per fact.
type folder struct {
	adds map[hourKey]*store.MetricValue
}

func (f *folder) value(at time.Time, k store.MetricKey) *store.MetricValue {
	hk := hourKey{at.UTC().Truncate(time.Hour), k}
	v := f.adds[hk]
	if v == nil {
		v = &store.MetricValue{}
		f.adds[hk] = v
	}
	return v
}

// count adds one fact with value x (0 for a plain count).
func (f *folder) count(at time.Time, k store.MetricKey, x float64) {
	f.value(at, k).Observe(k.Metric, x)
}

func (f *folder) write(ctx context.Context, tx pgx.Tx) error {
	keys := make([]hourKey, 0, len(f.adds))
	for k := range f.adds {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if !a.hour.Equal(b.hour) {
			return a.hour.Before(b.hour)
		}
		return fmt.Sprint(a.MetricKey) < fmt.Sprint(b.MetricKey)
	})
	for _, k := range keys {
		if err := store.MetricAdd(ctx, tx, k.hour, k.MetricKey, *f.adds[k]); err != nil {
			return err
		}
	}
	return nil
}

// events counts audit events. Rollback events name only their run: the
// run's workflow is read for them, a batch of runs at a time.
func (f *folder) events(ctx context.Context, tx pgx.Tx, events []store.MetricAuditEvent) error {
	var runIDs []string
	for _, e := range events {
		switch audit.Kind(e.Kind) {
		case audit.KindRunCompensating, audit.KindRunCompensated, audit.KindRunCompensationFailed:
			if e.RunID != "" {
				runIDs = append(runIDs, e.RunID)
			}
		}
	}
	workflows := map[string]string{}
	if len(runIDs) > 0 {
		runs, err := store.MetricRuns(ctx, tx, runIDs)
		if err != nil {
			return err
		}
		for _, r := range runs {
			workflows[r.ID] = r.Workflow
		}
	}
	for _, e := range events {
		if err := f.event(e, workflows); err != nil {
			return fmt.Errorf("audit event %d (%s): %w", e.Seq, e.Kind, err)
		}
	}
	return nil
}

func (f *folder) event(e store.MetricAuditEvent, workflows map[string]string) error {
	switch audit.Kind(e.Kind) {
	case audit.KindRunStarted:
		var d audit.RunStarted
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return err
		}
		f.count(e.At, store.MetricKey{Metric: store.MetricRunStarted, Workflow: d.Workflow}, 0)
	case audit.KindApprovalRequested, audit.KindDecisionAuto:
		var d audit.Facets
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return err
		}
		who := "human"
		if audit.Kind(e.Kind) == audit.KindDecisionAuto {
			who = "auto"
		}
		f.count(e.At, store.MetricKey{Metric: store.MetricApproval, Workflow: d.Workflow, Rule: d.Rule, Tier: string(d.Tier), Label: who}, 0)
	case audit.KindDecisionRecorded:
		var d audit.DecisionRecorded
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return err
		}
		k := store.MetricKey{Workflow: d.Workflow, Rule: d.Rule, Tier: string(d.Tier)}
		if isDeadline(e.Actor) {
			// The policy decides a request only when its deadline passes.
			k.Metric, k.Label = store.MetricDeadline, DeadlineOutcome(d.Verdict)
			f.count(e.At, k, 0)
			return nil
		}
		k.Metric, k.Label = store.MetricDecisionSeconds, string(d.Verdict)
		f.count(e.At, k, max(d.SecondsToDecision, 0))
	case audit.KindRequestEscalated:
		var d audit.RequestEscalated
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return err
		}
		f.count(e.At, store.MetricKey{Metric: store.MetricDeadline, Workflow: d.Workflow, Rule: d.Rule, Tier: string(d.Tier),
			Label: DeadlineEscalated}, 0)
	case audit.KindRunCompensating:
		var d audit.RunCompensating
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return err
		}
		f.count(e.At, store.MetricKey{Metric: store.MetricRollback, Workflow: workflows[e.RunID], Label: d.Cause}, float64(d.Undos))
	case audit.KindRunCompensated:
		var d audit.RunCompensated
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return err
		}
		f.count(e.At, store.MetricKey{Metric: store.MetricRollbackCompensated, Workflow: workflows[e.RunID], Label: d.Cause}, float64(d.Undone))
	case audit.KindRunCompensationFailed:
		var d audit.RunCompensationFailed
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return err
		}
		f.count(e.At, store.MetricKey{Metric: store.MetricRollbackFailed, Workflow: workflows[e.RunID], Label: d.Cause}, float64(d.Undone))
	case audit.KindRunFlaggedUnusable:
		var d audit.RunFlaggedUnusable
		if err := json.Unmarshal(e.Details, &d); err != nil {
			return err
		}
		f.count(e.At, store.MetricKey{Metric: store.MetricRunUnusable, Workflow: d.Workflow, Label: string(d.Category)}, 0)
	}
	return nil
}

// Deadline outcomes (the label of store.MetricDeadline).
const (
	DeadlineApproved  = "approved"
	DeadlineRejected  = "rejected"
	DeadlineEscalated = "escalated"
)

// DeadlineOutcome names what a deadline's decision did.
func DeadlineOutcome(v vocab.Verdict) string {
	if v == vocab.VerdictApprove {
		return DeadlineApproved
	}
	return DeadlineRejected
}

// isDeadline says whether a decision's actor is the policy acting at a
// deadline (approval.Service.Expire decides as "policy:<rule>").
func isDeadline(actor string) bool { return strings.HasPrefix(actor, "policy:") }

// timedOut says whether a failed attempt's error is a step's timeout
// (workflow's stepError: `step "x" timed out after 30s: …`).
func timedOut(msg string) bool {
	return strings.Contains(msg, "timed out after") || strings.HasSuffix(msg, context.DeadlineExceeded.Error())
}

// runs counts finished runs: their outcome and length, their steps'
// durations, retries, timeouts and model tokens.
func (f *folder) runs(ctx context.Context, tx pgx.Tx, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	runs, err := store.MetricRuns(ctx, tx, ids)
	if err != nil {
		return err
	}
	steps, err := store.MetricRunSteps(ctx, tx, ids)
	if err != nil {
		return err
	}
	attempts, err := store.MetricRunAttempts(ctx, tx, ids)
	if err != nil {
		return err
	}
	workflow := map[string]string{}
	for _, r := range runs {
		workflow[r.ID] = r.Workflow
		f.count(r.FinishedAt, store.MetricKey{Metric: store.MetricRunFinished, Workflow: r.Workflow, Label: r.Status},
			max(r.FinishedAt.Sub(r.CreatedAt).Seconds(), 0))
	}
	type stepID struct {
		run string
		seq int
	}
	timeouts := map[stepID]int{}
	for _, a := range attempts {
		if timedOut(a.Error) {
			timeouts[stepID{a.RunID, a.Seq}]++
		}
	}
	for _, s := range steps {
		wf, ok := workflow[s.RunID]
		if !ok {
			continue
		}
		at := s.StartedAt
		if s.FinishedAt != nil {
			at = *s.FinishedAt
			f.count(at, store.MetricKey{Metric: store.MetricStepSeconds, Workflow: wf, Label: s.Kind}, max(s.FinishedAt.Sub(s.StartedAt).Seconds(), 0))
		}
		completed := s.Status == string(vocab.StepCompleted)
		if s.Kind == string(vocab.StepKindModel) {
			f.count(at, store.MetricKey{Metric: store.MetricModelTokens, Workflow: wf, Label: s.Model}, float64(s.Tokens))
		}
		if n := timeouts[stepID{s.RunID, s.Seq}]; n > 0 {
			v := f.value(at, store.MetricKey{Metric: store.MetricStepTimeout, Workflow: wf, Label: s.Kind})
			v.Count += int64(n)
			if completed {
				f.count(at, store.MetricKey{Metric: store.MetricStepTimeoutRecovered, Workflow: wf, Label: s.Kind}, 0)
			}
		}
		if s.Attempts > 1 {
			v := f.value(at, store.MetricKey{Metric: store.MetricStepRetry, Workflow: wf, Label: s.Kind})
			v.Count += int64(s.Attempts - 1)
			metric := store.MetricStepRetryFailed
			if completed {
				metric = store.MetricStepRetrySucceeded
			}
			f.count(at, store.MetricKey{Metric: metric, Workflow: wf, Label: s.Kind}, 0)
		}
	}
	return nil
}
