package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/vocab"
)

// Run is one execution of a workflow.
type Run struct {
	ID           string          `json:"id"`
	Workflow     string          `json:"workflow"`
	BusinessKey  string          `json:"business_key"`
	Status       vocab.RunStatus `json:"status"`
	Input        json.RawMessage `json:"input"`
	Output       json.RawMessage `json:"output,omitempty"`
	ErrorCode    *string         `json:"error_code,omitempty"`
	ErrorMessage *string         `json:"error_message,omitempty"`
	Attempt      int             `json:"attempt"`
	CurrentStep  string          `json:"current_step"`
	ResumeSeq    int             `json:"resume_seq"`
	StepsUsed    int             `json:"steps_used"`
	ModelCalls   int             `json:"model_calls"`
	TokensUsed   int             `json:"tokens_used"`
	StartedBy    string          `json:"started_by"`
	Failures     int             `json:"failures"`   // error attempts spent
	Recoveries   int             `json:"recoveries"` // times a lost worker's run was handed on
	LeaseOwner   *string         `json:"-"`          // the execution holding the run
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
	FinishedAt   *time.Time      `json:"finished_at,omitempty"`
}

const runColumns = `id, workflow, business_key, status, input, output, error_code, error_message,
	attempt, current_step, resume_seq, steps_used, model_calls, tokens_used, started_by,
	failures, recoveries, lease_owner, created_at, updated_at, finished_at`

func scanRun(row pgx.Row) (*Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.Workflow, &r.BusinessKey, &r.Status, &r.Input, &r.Output,
		&r.ErrorCode, &r.ErrorMessage, &r.Attempt, &r.CurrentStep, &r.ResumeSeq, &r.StepsUsed,
		&r.ModelCalls, &r.TokensUsed, &r.StartedBy, &r.Failures, &r.Recoveries, &r.LeaseOwner, &r.CreatedAt, &r.UpdatedAt, &r.FinishedAt)
	if err != nil {
		return nil, interpret(err)
	}
	return &r, nil
}

// RunInsertParams describes a run to create.
type RunInsertParams struct {
	Workflow    string
	BusinessKey string
	Input       json.RawMessage
	StartedBy   string
}

// RunInsert creates a queued run. It returns the existing run and created=false
// when the workflow already has a run with that business key.
func RunInsert(ctx context.Context, db DBTX, p RunInsertParams) (run *Run, created bool, err error) {
	run, err = scanRun(db.QueryRow(ctx, `
		INSERT INTO workflow_runs (workflow, business_key, input, started_by)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (workflow, business_key) DO NOTHING
		RETURNING `+runColumns, p.Workflow, p.BusinessKey, p.Input, p.StartedBy))
	if err == nil {
		return run, true, nil
	}
	// Only "no row returned" means the conflict clause skipped the insert; a
	// refused value (ErrInvalidInput) or any other failure is not "exists".
	if !errors.Is(err, ErrNotFound) {
		return nil, false, fmt.Errorf("insert run: %w", interpret(err))
	}
	run, err = scanRun(db.QueryRow(ctx, `SELECT `+runColumns+` FROM workflow_runs
		WHERE workflow = $1 AND business_key = $2`, p.Workflow, p.BusinessKey))
	if err != nil {
		return nil, false, fmt.Errorf("get existing run: %w", interpret(err))
	}
	return run, false, nil
}

// RunGet returns one run. Returns ErrNotFound if it does not exist.
func RunGet(ctx context.Context, db DBTX, id string) (*Run, error) {
	run, err := scanRun(db.QueryRow(ctx, `SELECT `+runColumns+` FROM workflow_runs WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("get run: %w", interpret(err))
	}
	return run, nil
}

// RunGetForUpdate returns one run and locks it until the transaction ends.
func RunGetForUpdate(ctx context.Context, db DBTX, id string) (*Run, error) {
	run, err := scanRun(db.QueryRow(ctx, `SELECT `+runColumns+` FROM workflow_runs WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return nil, fmt.Errorf("lock run: %w", interpret(err))
	}
	return run, nil
}

// The functions below move a run's status only from the statuses in from,
// which the caller takes from its transitions table: the table is the one
// place that says how a run's life goes.

// RunClaim marks a run running for the job of resume sequence seq and gives
// the execution owner a lease of the given length. The run's attempt becomes
// its error attempt (failures + 1): a crash spends none. It returns
// ErrNotFound when the run is not in one of from, was resumed by a later job,
// or is running under another execution's live lease.
func RunClaim(ctx context.Context, db DBTX, id string, seq int, from []string, owner string, lease time.Duration) (*Run, error) {
	run, err := scanRun(db.QueryRow(ctx, `
		UPDATE workflow_runs SET status = 'running', attempt = failures + 1, updated_at = now(),
			lease_owner = $4, lease_until = now() + $5::bigint * interval '1 microsecond'
		WHERE id = $1 AND resume_seq = $2 AND status = ANY($3)
			AND (status <> 'running' OR lease_owner IS NULL OR lease_until < now())
		RETURNING `+runColumns, id, seq, from, owner, lease.Microseconds()))
	if err != nil {
		return nil, fmt.Errorf("claim run: %w", interpret(err))
	}
	return run, nil
}

// RunLeaseRenew extends owner's lease on a running run. It returns
// ErrNotFound when owner no longer holds the run: it was swept and handed on,
// cancelled, or ended.
func RunLeaseRenew(ctx context.Context, db DBTX, id, owner string, lease time.Duration) error {
	tag, err := db.Exec(ctx, `
		UPDATE workflow_runs SET lease_until = now() + $3::bigint * interval '1 microsecond'
		WHERE id = $1 AND lease_owner = $2 AND status = 'running'`, id, owner, lease.Microseconds())
	if err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// RunLeaseRelease gives up owner's lease, so that the next job may claim the
// run at once (a worker shutting down, a run parked for a human). The lease
// time stays: should that next job never come (River cancelled or discarded
// it), the sweeper finds the run when it lapses. It returns ErrNotFound when
// owner did not hold the run.
func RunLeaseRelease(ctx context.Context, db DBTX, id, owner string) error {
	tag, err := db.Exec(ctx, `
		UPDATE workflow_runs SET lease_owner = NULL
		WHERE id = $1 AND lease_owner = $2`, id, owner)
	if err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// RunSetStatus moves a run from one of the statuses in from to status. It
// returns ErrNotFound when the run is not in one of them.
func RunSetStatus(ctx context.Context, db DBTX, id string, from []string, status string) error {
	tag, err := db.Exec(ctx, `
		UPDATE workflow_runs SET status = $3, updated_at = now(),
			finished_at = CASE WHEN $3 IN ('failed', 'completed', 'rejected', 'cancelled') THEN now() END
		WHERE id = $1 AND status = ANY($2)`, id, from, status)
	if err != nil {
		return fmt.Errorf("set run status: %w", interpret(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// RunComplete records a run's output and marks it completed, if owner
// still holds it. Returns ErrNotFound otherwise (cancelled, or handed on).
func RunComplete(ctx context.Context, db DBTX, id, owner string, output json.RawMessage, from []string) error {
	tag, err := db.Exec(ctx, `
		UPDATE workflow_runs SET status = 'completed', output = $2, error_code = NULL, error_message = NULL,
			updated_at = now(), finished_at = now(), lease_owner = NULL, lease_until = NULL
		WHERE id = $1 AND status = ANY($3) AND lease_owner = $4`, id, output, from, owner)
	if err != nil {
		return fmt.Errorf("complete run: %w", interpret(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// RunFail records an error on a run that owner holds. With status "failed"
// the run ends; with "retrying" it counts a failure, gives up the lease and
// waits for River's next attempt, and the sweeper looks at it again after
// recheck, in case that attempt never comes. Returns ErrNotFound when owner
// does not hold the run.
func RunFail(ctx context.Context, db DBTX, id, owner, status, code, message string, from []string, recheck time.Duration) error {
	tag, err := db.Exec(ctx, `
		UPDATE workflow_runs SET status = $2, error_code = $3, error_message = $4, updated_at = now(),
			finished_at = CASE WHEN $2 = 'failed' THEN now() END,
			failures = failures + CASE WHEN $2 = 'retrying' THEN 1 ELSE 0 END,
			lease_owner = NULL,
			lease_until = CASE WHEN $2 = 'retrying' THEN now() + $7::bigint * interval '1 microsecond' END
		WHERE id = $1 AND status = ANY($5) AND lease_owner = $6`, id, status, code, message, from, owner, recheck.Microseconds())
	if err != nil {
		return fmt.Errorf("fail run: %w", interpret(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// RunSuspend marks a running run as waiting for a human. It drops the lease
// time, so that the run, once resumed, is looked at a lease after its resume
// (updated_at), not at once for a lease that lapsed while it waited.
func RunSuspend(ctx context.Context, db DBTX, id, currentStep string, from []string) error {
	tag, err := db.Exec(ctx, `
		UPDATE workflow_runs SET status = 'waiting_human', current_step = $2, updated_at = now(), lease_until = NULL
		WHERE id = $1 AND status = ANY($3)`, id, currentStep, from)
	if err != nil {
		return fmt.Errorf("suspend run: %w", interpret(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// RunResume moves a run back to queued under a new resume sequence and
// returns that sequence. Returns ErrNotFound when the run is not in from.
func RunResume(ctx context.Context, db DBTX, id string, from []string) (int, error) {
	var seq int
	err := db.QueryRow(ctx, `
		UPDATE workflow_runs SET status = 'queued', resume_seq = resume_seq + 1, updated_at = now()
		WHERE id = $1 AND status = ANY($2)
		RETURNING resume_seq`, id, from).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("resume run: %w", interpret(err))
	}
	return seq, nil
}

// RunListParams filters and pages a run listing. Pages are keyset pages: pass
// the last row's CreatedAt and ID to get the next one.
type RunListParams struct {
	Status      string
	Workflow    string
	BusinessKey string // prefix match
	Limit       int
	AfterTime   *time.Time
	AfterID     string
}

// RunList returns runs newest first.
func RunList(ctx context.Context, db DBTX, p RunListParams) ([]*Run, error) {
	var w where
	w.eq("status", p.Status)
	w.eq("workflow", p.Workflow)
	if p.BusinessKey != "" {
		w.add("business_key LIKE " + w.arg(strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(p.BusinessKey)) + " || '%'")
	}
	if p.AfterTime != nil {
		w.add(fmt.Sprintf("(created_at, id) < (%s, %s)", w.arg(*p.AfterTime), w.arg(p.AfterID)))
	}
	if p.Limit <= 0 || p.Limit > 500 {
		p.Limit = 50
	}
	q := fmt.Sprintf(`SELECT %s FROM workflow_runs WHERE %s ORDER BY created_at DESC, id DESC LIMIT %d`, runColumns, w.sql(), p.Limit)
	args := w.args
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", interpret(err))
	}
	defer rows.Close()
	var runs []*Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("scan run: %w", interpret(err))
		}
		runs = append(runs, r)
	}
	return runs, interpret(rows.Err())
}
