package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/store/dbsqlc"

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
	// WakeAt is when a durable wait's step is due: a sleep's wake-up time,
	// an event's timeout.
	WakeAt *time.Time `json:"wake_at,omitempty"`
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
	rows, err := queries.StepList(ctx, db, runID)
	if err != nil {
		return nil, fmt.Errorf("list steps: %w", interpret(err))
	}
	return convertAll(rows, func(s *dbsqlc.WorkflowStep) *Step {
		return &Step{RunID: s.RunID, Seq: s.Seq, Name: s.Name, Kind: vocab.StepKind(s.Kind), Status: vocab.StepStatus(s.Status), Output: s.Output,
			Error: s.Error, Attempts: s.Attempts, Tokens: s.Tokens, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, WakeAt: s.WakeAt}
	}), nil
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
	// Model is the model a model step used ("" for none: stored as NULL).
	Model     string
	StartedAt time.Time
	// FinishedAt is when the step's result arrived (StepComplete; zero:
	// now): a pure step's record may be written well after that.
	FinishedAt time.Time
	// Owner is the fencing token of the execution recording the step: a
	// record from an execution that lost the run is refused.
	Owner string
}

// stepRow is one element of the JSON array that StepComplete and
// RunComplete expand into rows (jsonb_to_recordset).
type stepRow struct {
	Seq        int             `json:"seq"`
	Name       string          `json:"name"`
	Kind       vocab.StepKind  `json:"kind"`
	Output     json.RawMessage `json:"output"`
	Tokens     int             `json:"tokens"`
	Attempts   int             `json:"attempts"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt time.Time       `json:"finished_at"`
	Model      *string         `json:"model"`
}

func encodeSteps(steps []StepRecord) (json.RawMessage, error) {
	rows := make([]stepRow, len(steps))
	now := time.Now()
	for i, s := range steps {
		rows[i] = stepRow{Seq: s.Seq, Name: s.Name, Kind: s.Kind, Output: s.Output, Tokens: s.Tokens, Attempts: s.Attempts,
			StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Model: nullable(s.Model)}
		if rows[i].FinishedAt.IsZero() {
			rows[i].FinishedAt = now
		}
		if len(rows[i].Output) == 0 {
			rows[i].Output = json.RawMessage("null")
		}
	}
	raw, err := json.Marshal(rows)
	if err != nil {
		return nil, fmt.Errorf("%w: encode steps: %v", ErrInvalidInput, err)
	}
	return raw, nil
}

// StepComplete stores one or more completed steps of one run (in order, the
// same RunID and Owner) and advances the run's counters, in one statement:
// a durable step and the pure steps before it that the engine held in
// memory cost one round trip and one commit. It returns ErrNotFound, having
// stored nothing, when the run is no longer running (cancelled while the
// step ran) or no longer held by the Owner (its lease lapsed and the run was
// handed on).
func StepComplete(ctx context.Context, db DBTX, steps ...StepRecord) error {
	if len(steps) == 0 {
		return nil
	}
	last := steps[len(steps)-1]
	batch, err := encodeSteps(steps)
	if err != nil {
		return fmt.Errorf("record step %s: %w", last.Name, err)
	}
	p := dbsqlc.StepCompleteParams{Steps: batch, CurrentStep: last.Name, StepsUsed: last.Seq + 1, RunID: last.RunID, Owner: &last.Owner}
	for _, s := range steps {
		p.TokensTotal += s.Tokens
		p.ModelCalls += s.ModelCalls
	}
	if err := oneRow(queries.StepComplete(ctx, db, p)); err != nil {
		return fmt.Errorf("record step %s: %w", last.Name, err)
	}
	return nil
}

// StepFail records a failed attempt of a step, for the run's timeline. Tokens
// spent by a failed model call still count against the run. Nothing is
// recorded when s.Owner no longer holds the run.
func StepFail(ctx context.Context, db DBTX, s StepRecord) error {
	err := queries.StepFail(ctx, db, dbsqlc.StepFailParams{RunID: s.RunID, Seq: s.Seq, Name: s.Name, Kind: string(s.Kind),
		Error: s.Error, Attempts: s.Attempts, Tokens: s.Tokens, ModelCalls: s.ModelCalls, StartedAt: s.StartedAt,
		Owner: &s.Owner, Model: nullable(s.Model)})
	if err != nil {
		return fmt.Errorf("record failed step %s: %w", s.Name, interpret(err))
	}
	return nil
}

// StepWait stores an approval step that waits for a decision; its output is
// the request id until the decision replaces it.
func StepWait(ctx context.Context, db DBTX, s StepRecord) error {
	err := queries.StepWait(ctx, db, dbsqlc.StepWaitParams{RunID: s.RunID, Seq: s.Seq, Name: s.Name, Output: s.Output,
		Attempts: s.Attempts, StartedAt: s.StartedAt})
	if err != nil {
		return fmt.Errorf("record waiting step %s: %w", s.Name, interpret(err))
	}
	return nil
}

// StepResolve completes a waiting approval step with the decision's result.
// A request with no step row (made outside a run's execution) resolves
// nothing, as it always has.
func StepResolve(ctx context.Context, db DBTX, runID string, seq int, output json.RawMessage) error {
	if err := queries.StepResolve(ctx, db, dbsqlc.StepResolveParams{RunID: runID, Seq: seq, Output: output}); err != nil {
		return fmt.Errorf("resolve approval step: %w", interpret(err))
	}
	return nil
}

// ErrEffectRecorded is returned by WithEffectTx when the effect's key is
// in the ledger already: another execution of the run recorded it, or is
// recording it and committed first.
var ErrEffectRecorded = errors.New("the effect is already recorded")

// WithEffectTx runs fn in a transaction that starts by recording key in
// the side-effect ledger, and commits it if fn succeeds. The ledger entry
// is sent with the BEGIN, in one round trip (pgx's TxOptions.BeginQuery, a
// simple-protocol string, hence the values written as literal writes
// them): an effect's transaction costs three round trips, not four. When
// the key is taken it returns ErrEffectRecorded without calling fn; a
// concurrent execution recording the same key makes this one wait for its
// commit first. (A failed BEGIN leaves its connection in a failed
// transaction, which the pool destroys on release rather than reuse: this
// takes a pool, never a connection, for that reason. It happens only when
// two executions of one run race for an effect.)
func WithEffectTx(ctx context.Context, pool *pgxpool.Pool, key, runID, stepName string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	lits := make([]string, 3)
	for i, v := range []string{key, runID, stepName} {
		lit, err := literal(v)
		if err != nil {
			return fmt.Errorf("claim effect %s: %w", key, err)
		}
		lits[i] = lit
	}
	begin := "BEGIN; INSERT INTO side_effects (idempotency_key, run_id, step_name) VALUES (" +
		lits[0] + ", " + lits[1] + "::uuid, " + lits[2] + ")"
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: begin})
	if err != nil {
		err = interpret(err)
		if errors.Is(err, ErrConflict) {
			return fmt.Errorf("effect %s: %w", key, ErrEffectRecorded)
		}
		return fmt.Errorf("claim effect %s: %w", key, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", interpret(err))
	}
	return nil
}

// literal writes s as an SQL expression whose value is s, made of hex
// digits only: convert_from(decode('<hex>', 'hex'), 'UTF8'). No server or
// session setting changes what it means: a quoted string with escaped
// quotes can be broken out of under a client encoding such as SJIS (whose
// two-byte characters can swallow the escaping backslash) and is refused
// with backslash_quote off; hex digits are the same bytes in every
// encoding and hold no quote. PostgreSQL text holds no NUL, and a string
// that is not UTF-8 is refused rather than sent.
func literal(s string) (string, error) {
	if strings.ContainsRune(s, 0) || !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: %q is not valid text", ErrInvalidInput, s)
	}
	return "convert_from(decode('" + hex.EncodeToString([]byte(s)) + "', 'hex'), 'UTF8')", nil
}

// OutboxInsert writes a demo effect to the demo sink.
func OutboxInsert(ctx context.Context, db DBTX, key, runID, kind string, payload any) (int64, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return 0, fmt.Errorf("encode outbox payload: %w", err)
	}
	id, err := queries.OutboxInsert(ctx, db, dbsqlc.OutboxInsertParams{IdempotencyKey: key, RunID: runID, Kind: kind, Payload: raw})
	if err != nil {
		return 0, fmt.Errorf("insert outbox: %w", interpret(err))
	}
	return id, nil
}

// OutboxDuplicates counts idempotency keys that appear more than once in the
// demo sink: a duplicated effect. It should always be 0.
func OutboxDuplicates(ctx context.Context, db DBTX) (int, error) {
	n, err := queries.OutboxDuplicates(ctx, db)
	if err != nil {
		return 0, fmt.Errorf("count outbox duplicates: %w", interpret(err))
	}
	return int(n), nil
}

// nullable is nil for "", else a pointer to s.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
