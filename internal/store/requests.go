package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/vocab"
)

// Request is an approval request: an action a run proposed, with the policy's
// verdict on it.
type Request struct {
	ID                string              `json:"id"`
	RunID             string              `json:"run_id"`
	StepSeq           int                 `json:"step_seq"`
	Workflow          string              `json:"workflow"`
	Tier              vocab.Tier          `json:"tier"`
	Status            vocab.RequestStatus `json:"status"`
	ActionKind        string              `json:"action_kind"`
	Summary           string              `json:"summary"`
	Action            json.RawMessage     `json:"action"`
	PayloadHash       string              `json:"payload_hash"`
	PolicyVersion     int                 `json:"policy_version"`
	Rule              string              `json:"rule"`
	Reason            string              `json:"reason"`
	ApprovalsRequired int                 `json:"approvals_required"`
	Roles             []vocab.Role        `json:"roles"`
	Deadline          *time.Time          `json:"deadline,omitempty"`
	OnTimeout         string              `json:"on_timeout,omitempty"`
	EscalateTo        []vocab.Role        `json:"escalate_to,omitempty"`
	EscalatedAt       *time.Time          `json:"escalated_at,omitempty"`
	BatchKey          string              `json:"batch_key,omitempty"`
	BatchID           *string             `json:"batch_id,omitempty"`
	Note              string              `json:"note,omitempty"`
	StartedBy         string              `json:"started_by"`
	CreatedAt         time.Time           `json:"created_at"`
	DecidedAt         *time.Time          `json:"decided_at,omitempty"`
	DecidedBy         *string             `json:"decided_by,omitempty"`
}

const requestColumns = `id, run_id, step_seq, workflow, tier, status, action_kind, summary, action,
	payload_hash, policy_version, rule, reason, approvals_required, roles, deadline, on_timeout,
	escalate_to, escalated_at, batch_key, started_by, created_at, decided_at, decided_by, batch_id, note`

// scanRequest reads a row that starts with requestColumns; extra receives the
// columns a query selects after them.
func scanRequest(row pgx.Row, extra ...any) (*Request, error) {
	var r Request
	err := row.Scan(append([]any{&r.ID, &r.RunID, &r.StepSeq, &r.Workflow, &r.Tier, &r.Status, &r.ActionKind,
		&r.Summary, &r.Action, &r.PayloadHash, &r.PolicyVersion, &r.Rule, &r.Reason,
		&r.ApprovalsRequired, &r.Roles, &r.Deadline, &r.OnTimeout, &r.EscalateTo, &r.EscalatedAt,
		&r.BatchKey, &r.StartedBy, &r.CreatedAt, &r.DecidedAt, &r.DecidedBy, &r.BatchID, &r.Note}, extra...)...)
	if err != nil {
		return nil, interpret(err)
	}
	return &r, nil
}

// RequestInsert stores a new approval request. For the auto tier pass
// Status "approved" with DecidedBy set: the request is decided as it is made.
func RequestInsert(ctx context.Context, db DBTX, r *Request) (*Request, error) {
	out, err := scanRequest(db.QueryRow(ctx, `
		INSERT INTO approval_requests (run_id, step_seq, workflow, tier, status, action_kind, summary, action,
			payload_hash, policy_version, rule, reason, approvals_required, roles, deadline, on_timeout,
			escalate_to, batch_key, started_by, decided_at, decided_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
			CASE WHEN $5 = 'pending' THEN NULL ELSE now() END, $20)
		RETURNING `+requestColumns,
		r.RunID, r.StepSeq, r.Workflow, r.Tier, r.Status, r.ActionKind, r.Summary, r.Action,
		r.PayloadHash, r.PolicyVersion, r.Rule, r.Reason, r.ApprovalsRequired, nonNil(r.Roles), r.Deadline,
		r.OnTimeout, nonNil(r.EscalateTo), r.BatchKey, r.StartedBy, r.DecidedBy))
	if err != nil {
		return nil, fmt.Errorf("insert request: %w", interpret(err))
	}
	return out, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// RequestGet returns one request. Returns ErrNotFound if it does not exist.
func RequestGet(ctx context.Context, db DBTX, id string) (*Request, error) {
	r, err := scanRequest(db.QueryRow(ctx, `SELECT `+requestColumns+` FROM approval_requests WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("get request: %w", interpret(err))
	}
	return r, nil
}

// RequestGetForUpdate returns one request locked until the transaction ends.
func RequestGetForUpdate(ctx context.Context, db DBTX, id string) (*Request, error) {
	r, err := scanRequest(db.QueryRow(ctx, `SELECT `+requestColumns+` FROM approval_requests WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return nil, fmt.Errorf("lock request: %w", interpret(err))
	}
	return r, nil
}

// RequestDecide moves a pending request whose payload hash matches to status.
// Only one caller can win: it returns ErrNotFound for every other, and the
// caller reads the row again to say why.
func RequestDecide(ctx context.Context, db DBTX, id, payloadHash, status, actor string) (*Request, error) {
	r, err := scanRequest(db.QueryRow(ctx, `
		UPDATE approval_requests SET status = $3, decided_by = $4, decided_at = now()
		WHERE id = $1 AND status = 'pending' AND payload_hash = $2
		RETURNING `+requestColumns, id, payloadHash, status, actor))
	if err != nil {
		return nil, fmt.Errorf("decide request: %w", interpret(err))
	}
	return r, nil
}

// RequestCancelForRun cancels a run's pending requests (the run was cancelled).
func RequestCancelForRun(ctx context.Context, db DBTX, runID, actor string) error {
	_, err := db.Exec(ctx, `
		UPDATE approval_requests SET status = 'cancelled', decided_by = $2, decided_at = now()
		WHERE run_id = $1 AND status = 'pending'`, runID, actor)
	if err != nil {
		return fmt.Errorf("cancel requests: %w", interpret(err))
	}
	return nil
}

// RequestListByRun returns a run's requests in the order they were made.
func RequestListByRun(ctx context.Context, db DBTX, runID string) ([]*Request, error) {
	return queryRequests(ctx, db, `SELECT `+requestColumns+` FROM approval_requests
		WHERE run_id = $1 ORDER BY created_at, id`, runID)
}

func queryRequests(ctx context.Context, db DBTX, sql string, args ...any) ([]*Request, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", interpret(err))
	}
	defer rows.Close()
	var out []*Request
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, fmt.Errorf("scan request: %w", interpret(err))
		}
		out = append(out, r)
	}
	return out, interpret(rows.Err())
}

// VoteAdd records one approver's vote and returns how many distinct approvers
// have voted. A repeated vote by the same actor is counted once.
func VoteAdd(ctx context.Context, db DBTX, requestID, actor, comment string) (int, error) {
	if _, err := db.Exec(ctx, `
		INSERT INTO approval_votes (request_id, actor, comment) VALUES ($1, $2, $3)
		ON CONFLICT (request_id, actor) DO NOTHING`, requestID, actor, comment); err != nil {
		return 0, fmt.Errorf("add vote: %w", interpret(err))
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM approval_votes WHERE request_id = $1`, requestID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count votes: %w", interpret(err))
	}
	return n, nil
}

// VoteList returns who has voted to approve a request.
func VoteList(ctx context.Context, db DBTX, requestID string) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT actor FROM approval_votes WHERE request_id = $1 ORDER BY created_at`, requestID)
	if err != nil {
		return nil, fmt.Errorf("list votes: %w", interpret(err))
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Decision is the final verdict on a request.
type Decision struct {
	ID              int64           `json:"id"`
	RequestID       string          `json:"request_id"`
	RunID           string          `json:"run_id"`
	Actor           string          `json:"actor"`
	Verdict         vocab.Verdict   `json:"verdict"`
	Reason          string          `json:"reason,omitempty"`
	Comment         string          `json:"comment,omitempty"`
	EditedParams    json.RawMessage `json:"edited_params,omitempty"`
	Diff            json.RawMessage `json:"diff,omitempty"`
	PayloadHash     string          `json:"payload_hash"`
	PolicyVersion   int             `json:"policy_version"`
	Rule            string          `json:"rule"`
	Tier            vocab.Tier      `json:"tier"`
	BatchDecisionID *string         `json:"batch_decision_id,omitempty"`
	// For an edit: the rule the edited action fell under when the policy in
	// force judged it again, that policy's version, and the edited action's
	// hash. Rule, PolicyVersion and PayloadHash stay those of the proposal.
	EditedRule          *string   `json:"edited_rule,omitempty"`
	EditedPolicyVersion *int      `json:"edited_policy_version,omitempty"`
	EditedPayloadHash   *string   `json:"edited_payload_hash,omitempty"`
	CreatedAt           time.Time `json:"created_at"`
}

const decisionColumns = `id, request_id, run_id, actor, verdict, reason, comment, edited_params, diff,
	payload_hash, policy_version, rule, tier, batch_decision_id, edited_rule, edited_policy_version,
	edited_payload_hash, created_at`

func scanDecision(row pgx.Row) (*Decision, error) {
	var d Decision
	err := row.Scan(&d.ID, &d.RequestID, &d.RunID, &d.Actor, &d.Verdict, &d.Reason, &d.Comment,
		&d.EditedParams, &d.Diff, &d.PayloadHash, &d.PolicyVersion, &d.Rule, &d.Tier,
		&d.BatchDecisionID, &d.EditedRule, &d.EditedPolicyVersion, &d.EditedPayloadHash, &d.CreatedAt)
	if err != nil {
		return nil, interpret(err)
	}
	return &d, nil
}

// DecisionInsert stores a decision. Returns ErrConflict when the request
// already has one.
func DecisionInsert(ctx context.Context, db DBTX, d *Decision) (*Decision, error) {
	out, err := scanDecision(db.QueryRow(ctx, `
		INSERT INTO decisions (request_id, run_id, actor, verdict, reason, comment, edited_params, diff,
			payload_hash, policy_version, rule, tier, batch_decision_id, edited_rule, edited_policy_version,
			edited_payload_hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		RETURNING `+decisionColumns,
		d.RequestID, d.RunID, d.Actor, d.Verdict, d.Reason, d.Comment, d.EditedParams, d.Diff,
		d.PayloadHash, d.PolicyVersion, d.Rule, d.Tier, d.BatchDecisionID, d.EditedRule, d.EditedPolicyVersion,
		d.EditedPayloadHash))
	if err != nil {
		return nil, fmt.Errorf("insert decision: %w", interpret(err))
	}
	return out, nil
}

// DecisionGetByRequest returns a request's decision. Returns ErrNotFound when
// it has none.
func DecisionGetByRequest(ctx context.Context, db DBTX, requestID string) (*Decision, error) {
	d, err := scanDecision(db.QueryRow(ctx, `SELECT `+decisionColumns+` FROM decisions WHERE request_id = $1`, requestID))
	if err != nil {
		return nil, fmt.Errorf("get decision: %w", interpret(err))
	}
	return d, nil
}
