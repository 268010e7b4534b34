package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"

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

// batchFromInternal converts a generated row, with what its pending items
// say, to the exported Batch.
func batchFromInternal(b *dbsqlc.Batch, pending int, deadline *time.Time) *Batch {
	return &Batch{
		ID: b.ID, GroupKey: b.GroupKey, Rule: b.Rule, Workflow: b.Workflow, ActionKind: b.ActionKind,
		Status: vocab.BatchStatus(b.Status), MaxSize: b.MaxSize, Size: b.Size, OpenedAt: b.OpenedAt, ClosesAt: b.ClosesAt,
		ClosedAt: b.ClosedAt, DecidedAt: b.DecidedAt, Pending: pending, Deadline: deadline,
	}
}

// BatchJoin adds a request to the open batch of its group, opening one when
// there is none, and returns the batch's id, whether it opened it, and
// whether it is still open: a batch that reaches its size closes at once.
func BatchJoin(ctx context.Context, db DBTX, requestID, groupKey, rule, workflow, actionKind string, maxSize int, closesAt time.Time) (id string, opened, open bool, err error) {
	b, err := queries.BatchJoin(ctx, db, dbsqlc.BatchJoinParams{GroupKey: groupKey, Rule: rule, Workflow: workflow,
		ActionKind: actionKind, MaxSize: maxSize, ClosesAt: closesAt})
	if err != nil {
		return "", false, false, fmt.Errorf("join batch: %w", interpret(err))
	}
	if err := oneRow(queries.RequestSetBatch(ctx, db, dbsqlc.RequestSetBatchParams{ID: requestID, BatchID: &b.ID})); err != nil {
		return "", false, false, fmt.Errorf("join batch: %w", err)
	}
	if b.Size >= maxSize {
		if _, err := BatchClose(ctx, db, b.ID); err != nil {
			return "", false, false, err
		}
		return b.ID, b.Opened, false, nil
	}
	return b.ID, b.Opened, true, nil
}

// BatchClose makes an open batch ready for review. It returns false when the
// batch was not open (already closed by size or time).
func BatchClose(ctx context.Context, db DBTX, id string) (bool, error) {
	n, err := queries.BatchClose(ctx, db, id)
	if err != nil {
		return false, fmt.Errorf("close batch: %w", interpret(err))
	}
	return n == 1, nil
}

// BatchGet returns one batch. Returns ErrNotFound.
func BatchGet(ctx context.Context, db DBTX, id string) (*Batch, error) {
	b, err := queries.BatchGet(ctx, db, id)
	if err != nil {
		return nil, fmt.Errorf("get batch: %w", interpret(err))
	}
	return batchFromInternal(&b.Batch, b.Pending, b.Deadline), nil
}

// BatchLock locks a batch for the rest of the transaction.
func BatchLock(ctx context.Context, db DBTX, id string) (*Batch, error) {
	if err := queries.BatchLock(ctx, db, id); err != nil {
		return nil, fmt.Errorf("lock batch: %w", interpret(err))
	}
	return BatchGet(ctx, db, id)
}

// BatchList returns batches of a status, oldest closed first.
func BatchList(ctx context.Context, db DBTX, status string, limit int) ([]*Batch, error) {
	if limit <= 0 || limit > 200 {
		limit = 100
	}
	rows, err := queries.BatchList(ctx, db, dbsqlc.BatchListParams{Status: status, RowLimit: int32(limit)})
	if err != nil {
		return nil, fmt.Errorf("list batches: %w", interpret(err))
	}
	return convertAll(rows, func(b *dbsqlc.BatchListRow) *Batch { return batchFromInternal(&b.Batch, b.Pending, b.Deadline) }), nil
}

// BatchItems returns a batch's pending requests in the order they joined.
func BatchItems(ctx context.Context, db DBTX, batchID string) ([]*Request, error) {
	return requestsResult(queries.BatchItems(ctx, db, &batchID))
}

// BatchDeciders returns one item of the batch, of any status, for each
// distinct way its items name who may decide them (the rule's roles, and
// escalate_to once escalated): enough to tell whether an actor may decide
// anything in the batch, without reading every item.
func BatchDeciders(ctx context.Context, db DBTX, batchID string) ([]*Request, error) {
	return requestsResult(queries.BatchDeciders(ctx, db, &batchID))
}

// BatchSetDecided marks a batch decided when nothing in it is pending.
func BatchSetDecided(ctx context.Context, db DBTX, id string) error {
	if err := queries.BatchSetDecided(ctx, db, id); err != nil {
		return fmt.Errorf("finish batch: %w", interpret(err))
	}
	return nil
}

// RequestLeaveOut takes a pending request out of its batch and back to the
// inbox as an explicit item, with a note saying why.
func RequestLeaveOut(ctx context.Context, db DBTX, id, note string) error {
	if err := queries.RequestLeaveOut(ctx, db, dbsqlc.RequestLeaveOutParams{ID: id, Note: note}); err != nil {
		return fmt.Errorf("leave out of batch: %w", interpret(err))
	}
	return nil
}

// RequestEscalate marks a pending request escalated. It returns false when the
// request is no longer pending or was escalated already.
func RequestEscalate(ctx context.Context, db DBTX, id, note string) (bool, error) {
	n, err := queries.RequestEscalate(ctx, db, dbsqlc.RequestEscalateParams{ID: id, Note: note})
	if err != nil {
		return false, fmt.Errorf("escalate request: %w", interpret(err))
	}
	return n == 1, nil
}

// BatchDecision is one reviewer action on a batch.
type BatchDecision struct {
	ID       string          `json:"id"`
	BatchID  string          `json:"batch_id"`
	Actor    string          `json:"actor"`
	Action   string          `json:"action"`
	Reason   string          `json:"reason,omitempty"`
	Approved int             `json:"approved"`
	Rejected int             `json:"rejected"`
	LeftOut  int             `json:"left_out"`
	Refused  json.RawMessage `json:"refused"`
	// Items is what the decision did to each item shown ('[]' before
	// migration 17).
	Items     json.RawMessage `json:"items"`
	CreatedAt time.Time       `json:"created_at"`
}

// BatchDecisionInsert opens a batch decision; BatchDecisionFinish records its counts.
func BatchDecisionInsert(ctx context.Context, db DBTX, batchID, actor, action, reason string) (string, error) {
	id, err := queries.BatchDecisionInsert(ctx, db, dbsqlc.BatchDecisionInsertParams{
		BatchID: batchID, Actor: actor, Action: action, Reason: reason})
	if err != nil {
		return "", fmt.Errorf("insert batch decision: %w", interpret(err))
	}
	return id, nil
}

// BatchDecisionFinish stores what a batch decision did. Returns ErrNotFound
// when there is no such decision.
func BatchDecisionFinish(ctx context.Context, db DBTX, d *BatchDecision) error {
	err := oneRow(queries.BatchDecisionFinish(ctx, db, dbsqlc.BatchDecisionFinishParams{
		ID: d.ID, Approved: d.Approved, Rejected: d.Rejected, LeftOut: d.LeftOut, Refused: d.Refused, Items: items(d.Items)}))
	if err != nil {
		return fmt.Errorf("finish batch decision: %w", err)
	}
	return nil
}

// RequestListAuto returns the most recent automatically approved requests.
func RequestListAuto(ctx context.Context, db DBTX, limit int) ([]*Request, error) {
	return requestsResult(queries.RequestListAuto(ctx, db, int32(limit)))
}

// BatchDecisionGet returns one batch decision. Returns ErrNotFound.
func BatchDecisionGet(ctx context.Context, db DBTX, id string) (*BatchDecision, error) {
	d, err := queries.BatchDecisionGet(ctx, db, id)
	if err != nil {
		return nil, fmt.Errorf("get batch decision: %w", interpret(err))
	}
	return &BatchDecision{ID: d.ID, BatchID: d.BatchID, Actor: d.Actor, Action: d.Action, Reason: d.Reason,
		Approved: d.Approved, Rejected: d.Rejected, LeftOut: d.LeftOut, Refused: d.Refused, Items: d.Items, CreatedAt: d.CreatedAt}, nil
}

// BatchOutcomeItem is one item of a batch as a batch decision left it.
type BatchOutcomeItem struct {
	RequestID string
	Summary   string
	Status    vocab.RequestStatus // now, which a later decision may have changed
	Verdict   vocab.Verdict       // what this decision gave it; "" when it gave none
}

// items is a decision's item outcomes, '[]' when none were given.
func items(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return []byte("[]")
	}
	return raw
}

// BatchDecisionItems returns every item of batch batchID, and the items
// named in leftOut (which left it), with the verdict that batch decision
// decisionID gave each, in the batch's order.
func BatchDecisionItems(ctx context.Context, db DBTX, batchID, decisionID string, leftOut []string) ([]BatchOutcomeItem, error) {
	if leftOut == nil {
		leftOut = []string{}
	}
	rows, err := queries.BatchDecisionItems(ctx, db, dbsqlc.BatchDecisionItemsParams{BatchDecisionID: decisionID, BatchID: batchID, Ids: leftOut})
	if err != nil {
		return nil, fmt.Errorf("batch decision items: %w", interpret(err))
	}
	out := make([]BatchOutcomeItem, len(rows))
	for i, r := range rows {
		out[i] = BatchOutcomeItem{RequestID: r.ID, Summary: r.Summary, Status: vocab.RequestStatus(r.Status), Verdict: vocab.Verdict(r.Verdict)}
	}
	return out, nil
}
