package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/countersign/countersign/vocab"
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
	w := where{conds: []string{"status = 'pending'"}}
	w.eq("workflow", p.Workflow)
	w.eq("rule", p.Rule)
	w.eq("tier", p.Tier)
	if p.OlderThan > 0 {
		w.add("created_at <= " + w.arg(p.Now.Add(-p.OlderThan)))
	}
	if c := p.After; c != nil {
		w.add(fmt.Sprintf("(%s, %s, created_at, id) > (%s, %s, %s, %s)", rank, dl,
			w.arg(c.Rank), w.arg(c.Deadline), w.arg(c.CreatedAt), w.arg(c.ID)))
	}
	if p.Limit <= 0 || p.Limit > 200 {
		p.Limit = 50
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT %s, %s, %s FROM approval_requests WHERE %s
		ORDER BY %s, %s, created_at, id LIMIT %d`, requestColumns, rank, dl, w.sql(), rank, dl, p.Limit), w.args...)
	if err != nil {
		return nil, fmt.Errorf("list inbox: %w", interpret(err))
	}
	defer rows.Close()
	var out []InboxRow
	for rows.Next() {
		var row InboxRow
		if row.Request, err = scanRequest(rows, &row.Cursor.Rank, &row.Cursor.Deadline); err != nil {
			return nil, fmt.Errorf("scan inbox row: %w", interpret(err))
		}
		row.Cursor.CreatedAt, row.Cursor.ID = row.Request.CreatedAt, row.Request.ID
		out = append(out, row)
	}
	return out, interpret(rows.Err())
}

// TierCount is how many requests of a tier are pending, counted up to a cap.
type TierCount struct {
	Tier   vocab.Tier
	Count  int
	Capped bool // Count is the cap: there are at least that many
}

// InboxCountCap bounds the inbox counts: counting is cheap up to it whatever
// the table's size, and past it reviewers need no exact figure.
const InboxCountCap = 1000

// RequestCountPending counts pending requests per tier, each up to InboxCountCap.
func RequestCountPending(ctx context.Context, db DBTX) ([]TierCount, error) {
	var out []TierCount
	for _, tier := range []vocab.Tier{vocab.TierExplicit, vocab.TierBatched} {
		var n int
		err := db.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM approval_requests
			WHERE status = 'pending' AND tier = $1 LIMIT $2) c`, tier, InboxCountCap).Scan(&n)
		if err != nil {
			return nil, fmt.Errorf("count pending: %w", interpret(err))
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
	var w where
	w.eq("status", p.Status)
	w.eq("tier", p.Tier)
	if p.AfterTime != nil {
		w.add(fmt.Sprintf("(created_at, id) < (%s, %s)", w.arg(*p.AfterTime), w.arg(p.AfterID)))
	}
	if p.Limit <= 0 || p.Limit > 200 {
		p.Limit = 50
	}
	return queryRequests(ctx, db, fmt.Sprintf(`SELECT %s FROM approval_requests WHERE %s
		ORDER BY created_at DESC, id DESC LIMIT %d`, requestColumns, w.sql(), p.Limit), w.args...)
}
