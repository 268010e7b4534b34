package store

import (
	"context"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"
)

// StepAttempt is one failed attempt of a step: its error and, when the run
// retries it, when the next attempt is due.
type StepAttempt struct {
	RunID      string     `json:"run_id"`
	Seq        int        `json:"seq"`
	Attempt    int        `json:"attempt"`
	Name       string     `json:"name"`
	Error      string     `json:"error"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt time.Time  `json:"finished_at"`
	RetryAt    *time.Time `json:"retry_at,omitempty"`
}

// StepAttemptInsert records a failed attempt of a step.
func StepAttemptInsert(ctx context.Context, db DBTX, a StepAttempt) error {
	err := queries.StepAttemptInsert(ctx, db, dbsqlc.StepAttemptInsertParams{RunID: a.RunID, Seq: a.Seq, Attempt: a.Attempt,
		Name: a.Name, Error: a.Error, StartedAt: a.StartedAt, RetryAt: a.RetryAt})
	if err != nil {
		return fmt.Errorf("record attempt %d of step %s: %w", a.Attempt, a.Name, interpret(err))
	}
	return nil
}

// StepAttemptSetRetry notes when a failed attempt's step is tried again.
func StepAttemptSetRetry(ctx context.Context, db DBTX, runID string, seq, attempt int, at time.Time) error {
	err := queries.StepAttemptSetRetry(ctx, db, dbsqlc.StepAttemptSetRetryParams{RunID: runID, Seq: seq, Attempt: attempt, RetryAt: &at})
	if err != nil {
		return fmt.Errorf("note retry of step %d: %w", seq, interpret(err))
	}
	return nil
}

// StepAttemptList returns a run's failed step attempts, by step and attempt.
func StepAttemptList(ctx context.Context, db DBTX, runID string) ([]*StepAttempt, error) {
	rows, err := queries.StepAttemptList(ctx, db, runID)
	if err != nil {
		return nil, fmt.Errorf("list step attempts: %w", interpret(err))
	}
	out := make([]*StepAttempt, len(rows))
	for i, r := range rows {
		out[i] = &StepAttempt{RunID: r.RunID, Seq: r.Seq, Attempt: r.Attempt, Name: r.Name, Error: r.Error,
			StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, RetryAt: r.RetryAt}
	}
	return out, nil
}

// RunRetryLater leaves a run retrying under a new resume sequence, holding
// no lease, after a failed step whose retry is due at retryAt; the sweeper
// looks at it a lease after that. It returns the new sequence, or
// ErrNotFound when owner no longer holds the run.
func RunRetryLater(ctx context.Context, db DBTX, id, owner string, from []string, code, message string, retryAt time.Time, lease time.Duration) (int, error) {
	seq, err := queries.RunRetryLater(ctx, db, dbsqlc.RunRetryLaterParams{ID: id, Owner: &owner, FromStatuses: from,
		ErrorCode: code, ErrorMessage: message, RetryUntil: retryAt.Add(lease)})
	if err != nil {
		return 0, fmt.Errorf("schedule retry of run %s: %w", id, interpret(err))
	}
	return seq, nil
}

// RunCompensateStart queues a run to undo its effects, for cause, under a
// new resume sequence. With owner set, only while that execution holds the
// run; code and message, when not empty, replace the run's error. Returns
// ErrNotFound when the run is not in a from status, is already compensating,
// or (with owner) is no longer held by it.
func RunCompensateStart(ctx context.Context, db DBTX, id, owner string, from []string, cause, code, message string) (int, error) {
	p := dbsqlc.RunCompensateStartParams{ID: id, Owner: owner, FromStatuses: from, Cause: cause}
	if code != "" {
		p.ErrorCode, p.ErrorMessage = &code, &message
	}
	seq, err := queries.RunCompensateStart(ctx, db, p)
	if err != nil {
		return 0, fmt.Errorf("start compensation of run %s: %w", id, interpret(err))
	}
	return seq, nil
}

// RunCompensateEnd ends a compensating run held by owner with status
// (compensated or compensation_failed); message, when not empty, replaces the
// run's error message. ErrNotFound when owner no longer holds it.
func RunCompensateEnd(ctx context.Context, db DBTX, id, owner, status, message string) error {
	p := dbsqlc.RunCompensateEndParams{ID: id, Owner: &owner, Status: status}
	if message != "" {
		p.ErrorMessage = &message
	}
	if err := oneRow(queries.RunCompensateEnd(ctx, db, p)); err != nil {
		return fmt.Errorf("end compensation of run %s: %w", id, err)
	}
	return nil
}

// StepCompensate records an undo that ran, at seq, only while owner holds the
// compensating run (ErrNotFound otherwise).
func StepCompensate(ctx context.Context, db DBTX, s StepRecord) error {
	err := oneRow(queries.StepCompensate(ctx, db, dbsqlc.StepCompensateParams{RunID: s.RunID, Seq: s.Seq, Name: s.Name,
		Output: s.Output, Attempts: s.Attempts, StartedAt: s.StartedAt, Owner: &s.Owner}))
	if err != nil {
		return fmt.Errorf("record undo %s: %w", s.Name, err)
	}
	return nil
}
