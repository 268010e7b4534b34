package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/vocab"
)

// Batch groups batched requests for one reviewer action.
type Batch struct {
	ID         string            `json:"id"`
	GroupKey   string            `json:"group_key"`
	Rule       string            `json:"rule"`
	Workflow   string            `json:"workflow"`
	ActionKind string            `json:"action_kind"`
	Status     vocab.BatchStatus `json:"status"`
	MaxSize    int               `json:"max_size"`
	Size       int               `json:"size"`
	OpenedAt   time.Time         `json:"opened_at"`
	ClosesAt   time.Time         `json:"closes_at"`
	ClosedAt   *time.Time        `json:"closed_at,omitempty"`
	DecidedAt  *time.Time        `json:"decided_at,omitempty"`
	// Pending and Deadline describe the items still waiting (read by listings).
	Pending  int        `json:"pending"`
	Deadline *time.Time `json:"deadline,omitempty"`
}

const batchColumns = `b.id, b.group_key, b.rule, b.workflow, b.action_kind, b.status, b.max_size, b.size,
	b.opened_at, b.closes_at, b.closed_at, b.decided_at,
	(SELECT count(*) FROM approval_requests r WHERE r.batch_id = b.id AND r.status = 'pending'),
	(SELECT min(r.deadline) FROM approval_requests r WHERE r.batch_id = b.id AND r.status = 'pending')`

func scanBatch(row pgx.Row) (*Batch, error) {
	var b Batch
	if err := row.Scan(&b.ID, &b.GroupKey, &b.Rule, &b.Workflow, &b.ActionKind, &b.Status, &b.MaxSize, &b.Size,
		&b.OpenedAt, &b.ClosesAt, &b.ClosedAt, &b.DecidedAt, &b.Pending, &b.Deadline); err != nil {
		return nil, interpret(err)
	}
	return &b, nil
}

// BatchJoin adds a request to the open batch of its group, opening one when
// there is none, and returns the batch's id, whether it opened it, and
// whether it is still open: a batch that reaches its size closes at once.
func BatchJoin(ctx context.Context, db DBTX, requestID, groupKey, rule, workflow, actionKind string, maxSize int, closesAt time.Time) (id string, opened, open bool, err error) {
	var size int
	err = db.QueryRow(ctx, `
		INSERT INTO batches AS b (group_key, rule, workflow, action_kind, max_size, size, closes_at)
		VALUES ($1, $2, $3, $4, $5, 1, $6)
		ON CONFLICT (group_key) WHERE status = 'open' DO UPDATE SET size = b.size + 1
		RETURNING id, size, xmax = 0`, groupKey, rule, workflow, actionKind, maxSize, closesAt).Scan(&id, &size, &opened)
	if err != nil {
		return "", false, false, fmt.Errorf("join batch: %w", interpret(err))
	}
	if _, err := db.Exec(ctx, `UPDATE approval_requests SET batch_id = $2 WHERE id = $1`, requestID, id); err != nil {
		return "", false, false, fmt.Errorf("join batch: %w", interpret(err))
	}
	if size >= maxSize {
		if _, err := BatchClose(ctx, db, id); err != nil {
			return "", false, false, err
		}
		return id, opened, false, nil
	}
	return id, opened, true, nil
}

// BatchClose makes an open batch ready for review. It returns false when the
// batch was not open (already closed by size or time).
func BatchClose(ctx context.Context, db DBTX, id string) (bool, error) {
	tag, err := db.Exec(ctx, `UPDATE batches SET status = 'ready', closed_at = now() WHERE id = $1 AND status = 'open'`, id)
	if err != nil {
		return false, fmt.Errorf("close batch: %w", interpret(err))
	}
	return tag.RowsAffected() == 1, nil
}

// BatchGet returns one batch. Returns ErrNotFound.
func BatchGet(ctx context.Context, db DBTX, id string) (*Batch, error) {
	b, err := scanBatch(db.QueryRow(ctx, `SELECT `+batchColumns+` FROM batches b WHERE b.id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("get batch: %w", interpret(err))
	}
	return b, nil
}

// BatchLock locks a batch for the rest of the transaction.
func BatchLock(ctx context.Context, db DBTX, id string) (*Batch, error) {
	if _, err := db.Exec(ctx, `SELECT 1 FROM batches WHERE id = $1 FOR UPDATE`, id); err != nil {
		return nil, fmt.Errorf("lock batch: %w", interpret(err))
	}
	return BatchGet(ctx, db, id)
}

// BatchList returns batches of a status, oldest closed first.
func BatchList(ctx context.Context, db DBTX, status string, limit int) ([]*Batch, error) {
	if limit <= 0 || limit > 200 {
		limit = 100
	}
	rows, err := db.Query(ctx, `SELECT `+batchColumns+` FROM batches b WHERE b.status = $1
		ORDER BY b.closed_at NULLS LAST, b.opened_at, b.id LIMIT $2`, status, limit)
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", interpret(err))
	}
	defer rows.Close()
	var out []*Batch
	for rows.Next() {
		b, err := scanBatch(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, interpret(rows.Err())
}

// BatchItems returns a batch's pending requests in the order they joined.
func BatchItems(ctx context.Context, db DBTX, batchID string) ([]*Request, error) {
	return queryRequests(ctx, db, `SELECT `+requestColumns+` FROM approval_requests
		WHERE batch_id = $1 AND status = 'pending' ORDER BY created_at, id`, batchID)
}

// BatchDeciders returns one item of the batch, of any status, for each
// distinct way its items name who may decide them (the rule's roles, and
// escalate_to once escalated): enough to tell whether an actor may decide
// anything in the batch, without reading every item.
func BatchDeciders(ctx context.Context, db DBTX, batchID string) ([]*Request, error) {
	// The distinct step sorts only the columns it compares, not the actions.
	return queryRequests(ctx, db, `SELECT `+requestColumns+` FROM approval_requests WHERE id IN (
		SELECT DISTINCT ON (roles, escalate_to, escalated_at IS NULL) id FROM approval_requests
		WHERE batch_id = $1 ORDER BY roles, escalate_to, escalated_at IS NULL, id)`, batchID)
}

// BatchSetDecided marks a batch decided when nothing in it is pending.
func BatchSetDecided(ctx context.Context, db DBTX, id string) error {
	_, err := db.Exec(ctx, `UPDATE batches SET status = 'decided', decided_at = now(), closed_at = coalesce(closed_at, now())
		WHERE id = $1 AND status <> 'decided'
		AND NOT EXISTS (SELECT 1 FROM approval_requests WHERE batch_id = $1 AND status = 'pending')`, id)
	if err != nil {
		return fmt.Errorf("finish batch: %w", interpret(err))
	}
	return nil
}

// RequestLeaveOut takes a pending request out of its batch and back to the
// inbox as an explicit item, with a note saying why.
func RequestLeaveOut(ctx context.Context, db DBTX, id, note string) error {
	_, err := db.Exec(ctx, `UPDATE approval_requests SET tier = 'explicit', batch_id = NULL, note = $2
		WHERE id = $1 AND status = 'pending'`, id, note)
	if err != nil {
		return fmt.Errorf("leave out of batch: %w", interpret(err))
	}
	return nil
}

// RequestEscalate marks a pending request escalated. It returns false when the
// request is no longer pending or was escalated already.
func RequestEscalate(ctx context.Context, db DBTX, id, note string) (bool, error) {
	tag, err := db.Exec(ctx, `UPDATE approval_requests SET escalated_at = now(), note = $2
		WHERE id = $1 AND status = 'pending' AND escalated_at IS NULL`, id, note)
	if err != nil {
		return false, fmt.Errorf("escalate request: %w", interpret(err))
	}
	return tag.RowsAffected() == 1, nil
}

// BatchDecision is one reviewer action on a batch.
type BatchDecision struct {
	ID        string          `json:"id"`
	BatchID   string          `json:"batch_id"`
	Actor     string          `json:"actor"`
	Action    string          `json:"action"`
	Reason    string          `json:"reason,omitempty"`
	Approved  int             `json:"approved"`
	Rejected  int             `json:"rejected"`
	LeftOut   int             `json:"left_out"`
	Refused   json.RawMessage `json:"refused"`
	CreatedAt time.Time       `json:"created_at"`
}

// BatchDecisionInsert opens a batch decision; BatchDecisionFinish records its counts.
func BatchDecisionInsert(ctx context.Context, db DBTX, batchID, actor, action, reason string) (string, error) {
	var id string
	err := db.QueryRow(ctx, `INSERT INTO batch_decisions (batch_id, actor, action, reason) VALUES ($1, $2, $3, $4) RETURNING id`,
		batchID, actor, action, reason).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("insert batch decision: %w", interpret(err))
	}
	return id, nil
}

// BatchDecisionFinish stores what a batch decision did.
func BatchDecisionFinish(ctx context.Context, db DBTX, d *BatchDecision) error {
	_, err := db.Exec(ctx, `UPDATE batch_decisions SET approved = $2, rejected = $3, left_out = $4, refused = $5 WHERE id = $1`,
		d.ID, d.Approved, d.Rejected, d.LeftOut, d.Refused)
	if err != nil {
		return fmt.Errorf("finish batch decision: %w", interpret(err))
	}
	return nil
}

// RequestListAuto returns the most recent automatically approved requests.
func RequestListAuto(ctx context.Context, db DBTX, limit int) ([]*Request, error) {
	return queryRequests(ctx, db, `SELECT `+requestColumns+` FROM approval_requests
		WHERE tier = 'auto' ORDER BY created_at DESC, id DESC LIMIT $1`, limit)
}

// BatchSettleForRun marks decided the batches of a run's requests that have
// nothing pending left (the run was cancelled).
func BatchSettleForRun(ctx context.Context, db DBTX, runID string) error {
	_, err := db.Exec(ctx, `UPDATE batches b SET status = 'decided', decided_at = now(), closed_at = coalesce(closed_at, now())
		WHERE b.status <> 'decided'
		AND b.id IN (SELECT batch_id FROM approval_requests WHERE run_id = $1 AND batch_id IS NOT NULL)
		AND NOT EXISTS (SELECT 1 FROM approval_requests r WHERE r.batch_id = b.id AND r.status = 'pending')`, runID)
	if err != nil {
		return fmt.Errorf("settle batches: %w", interpret(err))
	}
	return nil
}

// BatchDecisionGet returns one batch decision. Returns ErrNotFound.
func BatchDecisionGet(ctx context.Context, db DBTX, id string) (*BatchDecision, error) {
	var d BatchDecision
	err := db.QueryRow(ctx, `SELECT id, batch_id, actor, action, reason, approved, rejected, left_out, refused, created_at
		FROM batch_decisions WHERE id = $1`, id).Scan(&d.ID, &d.BatchID, &d.Actor, &d.Action, &d.Reason,
		&d.Approved, &d.Rejected, &d.LeftOut, &d.Refused, &d.CreatedAt)
	if err != nil {
		return nil, fmt.Errorf("get batch decision: %w", interpret(err))
	}
	return &d, nil
}
