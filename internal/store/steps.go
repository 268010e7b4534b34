package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/countersign/countersign/vocab"
)

// Step is the recorded result of one durable step of a run.
type Step struct {
	RunID      string           `json:"run_id"`
	Seq        int              `json:"seq"`
	Name       string           `json:"name"`
	Kind       vocab.StepKind   `json:"kind"`
	Status     vocab.StepStatus `json:"status"`
	Output     json.RawMessage  `json:"output,omitempty"`
	Error      *string          `json:"error,omitempty"`
	Attempts   int              `json:"attempts"`
	Tokens     int              `json:"tokens"`
	StartedAt  time.Time        `json:"started_at"`
	FinishedAt *time.Time       `json:"finished_at,omitempty"`
}

// Duration is how long the step's last attempt took.
func (s *Step) Duration() time.Duration {
	if s.FinishedAt == nil {
		return 0
	}
	return s.FinishedAt.Sub(s.StartedAt)
}

// StepList returns a run's steps in order.
func StepList(ctx context.Context, db DBTX, runID string) ([]*Step, error) {
	rows, err := db.Query(ctx, `
		SELECT run_id, seq, name, kind, status, output, error, attempts, tokens, started_at, finished_at
		FROM workflow_steps WHERE run_id = $1 ORDER BY seq`, runID)
	if err != nil {
		return nil, fmt.Errorf("list steps: %w", interpret(err))
	}
	defer rows.Close()
	var steps []*Step
	for rows.Next() {
		var s Step
		if err := rows.Scan(&s.RunID, &s.Seq, &s.Name, &s.Kind, &s.Status, &s.Output, &s.Error,
			&s.Attempts, &s.Tokens, &s.StartedAt, &s.FinishedAt); err != nil {
			return nil, fmt.Errorf("scan step: %w", interpret(err))
		}
		steps = append(steps, &s)
	}
	return steps, interpret(rows.Err())
}

// StepRecord is a step result to store.
type StepRecord struct {
	RunID      string
	Seq        int
	Name       string
	Kind       vocab.StepKind
	Status     vocab.StepStatus
	Output     json.RawMessage
	Error      string
	Attempts   int
	Tokens     int
	ModelCalls int
	StartedAt  time.Time
	// Owner is the fencing token of the execution recording the step: a
	// record from an execution that lost the run is refused.
	Owner string
}

// StepComplete stores a completed step and advances the run's counters in one
// statement, so that a plain step costs one round trip. It returns ErrNotFound
// when the run is no longer running (cancelled while the step ran) or no
// longer held by s.Owner (its lease lapsed and the run was handed on).
func StepComplete(ctx context.Context, db DBTX, s StepRecord) error {
	tag, err := db.Exec(ctx, `
		WITH run AS (
			UPDATE workflow_runs
			SET current_step = $3, steps_used = GREATEST(steps_used, $2 + 1),
				tokens_used = tokens_used + $7, model_calls = model_calls + $8, updated_at = now()
			WHERE id = $1 AND status = 'running' AND lease_owner = $10
			RETURNING id
		)
		INSERT INTO workflow_steps (run_id, seq, name, kind, status, output, tokens, attempts, started_at, finished_at)
		SELECT run.id, $2, $3, $4, 'completed', $5, $7, $6, $9, now() FROM run
		ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
			status = 'completed', output = EXCLUDED.output, error = NULL, tokens = EXCLUDED.tokens,
			attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, finished_at = now()`,
		s.RunID, s.Seq, s.Name, s.Kind, s.Output, s.Attempts, s.Tokens, s.ModelCalls, s.StartedAt, s.Owner)
	if err != nil {
		return fmt.Errorf("record step %s: %w", s.Name, interpret(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// StepFail records a failed attempt of a step, for the run's timeline. Tokens
// spent by a failed model call still count against the run. Nothing is
// recorded when s.Owner no longer holds the run.
func StepFail(ctx context.Context, db DBTX, s StepRecord) error {
	_, err := db.Exec(ctx, `
		WITH run AS (
			UPDATE workflow_runs SET tokens_used = tokens_used + $7, model_calls = model_calls + $8, updated_at = now()
			WHERE id = $1 AND lease_owner = $10 RETURNING id
		)
		INSERT INTO workflow_steps (run_id, seq, name, kind, status, error, tokens, attempts, started_at, finished_at)
		SELECT run.id, $2, $3, $4, 'failed', $5, $7, $6, $9, now() FROM run
		ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
			status = 'failed', error = EXCLUDED.error, tokens = workflow_steps.tokens + EXCLUDED.tokens,
			attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, finished_at = now()`,
		s.RunID, s.Seq, s.Name, s.Kind, s.Error, s.Attempts, s.Tokens, s.ModelCalls, s.StartedAt, s.Owner)
	if err != nil {
		return fmt.Errorf("record failed step %s: %w", s.Name, interpret(err))
	}
	return nil
}

// StepWait stores an approval step that waits for a decision; its output is
// the request id until the decision replaces it.
func StepWait(ctx context.Context, db DBTX, s StepRecord) error {
	_, err := db.Exec(ctx, `
		INSERT INTO workflow_steps (run_id, seq, name, kind, status, output, attempts, started_at)
		VALUES ($1, $2, $3, 'approval', 'waiting', $4, $5, $6)
		ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
			status = 'waiting', output = EXCLUDED.output, error = NULL, attempts = EXCLUDED.attempts,
			started_at = EXCLUDED.started_at, finished_at = NULL`,
		s.RunID, s.Seq, s.Name, s.Output, s.Attempts, s.StartedAt)
	if err != nil {
		return fmt.Errorf("record waiting step %s: %w", s.Name, interpret(err))
	}
	return nil
}

// StepResolve completes a waiting approval step with the decision's result.
func StepResolve(ctx context.Context, db DBTX, runID string, seq int, output json.RawMessage) error {
	_, err := db.Exec(ctx, `
		UPDATE workflow_steps SET status = 'completed', output = $3, finished_at = now()
		WHERE run_id = $1 AND seq = $2`, runID, seq, output)
	if err != nil {
		return fmt.Errorf("resolve approval step: %w", interpret(err))
	}
	return nil
}

// EffectClaim records an idempotency key in the side-effect ledger. It returns
// false when the key was already there: the effect happened before.
func EffectClaim(ctx context.Context, db DBTX, key, runID, stepName string) (bool, error) {
	tag, err := db.Exec(ctx, `
		INSERT INTO side_effects (idempotency_key, run_id, step_name) VALUES ($1, $2, $3)
		ON CONFLICT (idempotency_key) DO NOTHING`, key, runID, stepName)
	if err != nil {
		return false, fmt.Errorf("claim effect %s: %w", key, interpret(err))
	}
	return tag.RowsAffected() == 1, nil
}

// OutboxInsert writes a demo effect to the demo sink.
func OutboxInsert(ctx context.Context, db DBTX, key, runID, kind string, payload any) (int64, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return 0, fmt.Errorf("encode outbox payload: %w", err)
	}
	var id int64
	err = db.QueryRow(ctx, `INSERT INTO demo_outbox (idempotency_key, run_id, kind, payload)
		VALUES ($1, $2, $3, $4) RETURNING id`, key, runID, kind, raw).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert outbox: %w", interpret(err))
	}
	return id, nil
}

// OutboxDuplicates counts idempotency keys that appear more than once in the
// demo sink: a duplicated effect. It should always be 0.
func OutboxDuplicates(ctx context.Context, db DBTX) (int, error) {
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM (SELECT idempotency_key FROM demo_outbox
		GROUP BY idempotency_key HAVING count(*) > 1) d`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count outbox duplicates: %w", interpret(err))
	}
	return n, nil
}
