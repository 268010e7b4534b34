package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// InboxCursor is the keyset position after the last row of a page.
type InboxCursor struct {
	Rank      int
	Deadline  pgtype.Timestamptz // infinity when the request has none
	CreatedAt time.Time
	ID        string
}

// InboxParams filter and page the inbox.
type InboxParams struct {
	Workflow  string
	Rule      string
	Tier      string
	OlderThan time.Duration // only requests waiting at least this long
	After     *InboxCursor
	Limit     int
	Now       time.Time
}

// InboxRow is a pending request as the inbox lists it.
type InboxRow struct {
	Request *Request
	Cursor  InboxCursor
}

// RequestListInbox returns pending requests, explicit first, then by deadline
// (none last), then oldest first, one keyset page at a time.
func RequestListInbox(ctx context.Context, db DBTX, p InboxParams) ([]InboxRow, error) {
	rank := `(CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END)`
	dl := `(coalesce(deadline, 'infinity'::timestamptz))`
	where := []string{"status = 'pending'"}
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if p.Workflow != "" {
		where = append(where, "workflow = "+arg(p.Workflow))
	}
	if p.Rule != "" {
		where = append(where, "rule = "+arg(p.Rule))
	}
	if p.Tier != "" {
		where = append(where, "tier = "+arg(p.Tier))
	}
	if p.OlderThan > 0 {
		where = append(where, "created_at <= "+arg(p.Now.Add(-p.OlderThan)))
	}
	if c := p.After; c != nil {
		where = append(where, fmt.Sprintf("(%s, %s, created_at, id) > (%s, %s, %s, %s)", rank, dl,
			arg(c.Rank), arg(c.Deadline), arg(c.CreatedAt), arg(c.ID)))
	}
	if p.Limit <= 0 || p.Limit > 200 {
		p.Limit = 50
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT %s, %s, %s FROM approval_requests WHERE %s
		ORDER BY %s, %s, created_at, id LIMIT %d`, requestColumns, rank, dl, strings.Join(where, " AND "),
		rank, dl, p.Limit), args...)
	if err != nil {
		return nil, fmt.Errorf("list inbox: %w", err)
	}
	defer rows.Close()
	var out []InboxRow
	for rows.Next() {
		var r Request
		var row InboxRow
		if err := rows.Scan(&r.ID, &r.RunID, &r.StepSeq, &r.Workflow, &r.Tier, &r.Status, &r.ActionKind,
			&r.Summary, &r.Action, &r.PayloadHash, &r.PolicyVersion, &r.Rule, &r.Reason,
			&r.ApprovalsRequired, &r.Roles, &r.Deadline, &r.OnTimeout, &r.EscalateTo, &r.EscalatedAt,
			&r.BatchKey, &r.StartedBy, &r.CreatedAt, &r.DecidedAt, &r.DecidedBy, &r.BatchID, &r.Note,
			&row.Cursor.Rank, &row.Cursor.Deadline); err != nil {
			return nil, fmt.Errorf("scan inbox row: %w", err)
		}
		row.Request = &r
		row.Cursor.CreatedAt, row.Cursor.ID = r.CreatedAt, r.ID
		out = append(out, row)
	}
	return out, rows.Err()
}

// TierCount is how many requests of a tier are pending, counted up to a cap.
type TierCount struct {
	Tier   string
	Count  int
	Capped bool // Count is the cap: there are at least that many
}

// InboxCountCap bounds the inbox counts: counting is cheap up to it whatever
// the table's size, and past it reviewers need no exact figure.
const InboxCountCap = 1000

// RequestCountPending counts pending requests per tier, each up to InboxCountCap.
func RequestCountPending(ctx context.Context, db DBTX) ([]TierCount, error) {
	var out []TierCount
	for _, tier := range []string{"explicit", "batched"} {
		var n int
		err := db.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM approval_requests
			WHERE status = 'pending' AND tier = $1 LIMIT $2) c`, tier, InboxCountCap).Scan(&n)
		if err != nil {
			return nil, fmt.Errorf("count pending: %w", err)
		}
		out = append(out, TierCount{Tier: tier, Count: n, Capped: n >= InboxCountCap})
	}
	return out, nil
}

// RequestListParams filter the API's request listing, newest first.
type RequestListParams struct {
	Status    string
	Tier      string
	Limit     int
	AfterTime *time.Time
	AfterID   string
}

// RequestList lists requests newest first with keyset paging.
func RequestList(ctx context.Context, db DBTX, p RequestListParams) ([]*Request, error) {
	where := []string{"true"}
	var args []any
	arg := func(v any) string { args = append(args, v); return fmt.Sprintf("$%d", len(args)) }
	if p.Status != "" {
		where = append(where, "status = "+arg(p.Status))
	}
	if p.Tier != "" {
		where = append(where, "tier = "+arg(p.Tier))
	}
	if p.AfterTime != nil {
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(*p.AfterTime), arg(p.AfterID)))
	}
	if p.Limit <= 0 || p.Limit > 200 {
		p.Limit = 50
	}
	return queryRequests(ctx, db, fmt.Sprintf(`SELECT %s FROM approval_requests WHERE %s
		ORDER BY created_at DESC, id DESC LIMIT %d`, requestColumns, strings.Join(where, " AND "), p.Limit), args...)
}
