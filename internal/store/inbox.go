package store

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/countersign/countersign/internal/store/dbsqlc"

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

//go:embed sql/RequestListInbox.sql
var requestListInboxSQL string

// inboxRow is a row of requestListInboxSQL.
type inboxRow struct {
	dbsqlc.ApprovalRequest
	Rank        int                `db:"rank"`
	DeadlineKey pgtype.Timestamptz `db:"deadline_key"`
}

// RequestListInbox returns pending requests, escalated first, then explicit,
// then by deadline (none last), then oldest first, one keyset page at a time.
func RequestListInbox(ctx context.Context, db DBTX, p InboxParams) ([]InboxRow, error) {
	if p.Limit <= 0 || p.Limit > 200 {
		p.Limit = 50
	}
	args := pgx.NamedArgs{"workflow": p.Workflow, "rule": p.Rule, "tier": p.Tier, "row_limit": p.Limit,
		"created_before": nil, "after_rank": nil, "after_deadline": nil, "after_created_at": nil, "after_id": nil}
	if p.OlderThan > 0 {
		args["created_before"] = p.Now.Add(-p.OlderThan)
	}
	if c := p.After; c != nil {
		args["after_rank"], args["after_deadline"], args["after_created_at"], args["after_id"] = c.Rank, c.Deadline, c.CreatedAt, c.ID
	}
	rows, err := db.Query(ctx, requestListInboxSQL, args)
	if err != nil {
		return nil, fmt.Errorf("list inbox: %w", interpret(err))
	}
	got, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[inboxRow])
	if err != nil {
		return nil, fmt.Errorf("list inbox: %w", interpret(err))
	}
	return convertAll(got, func(r *inboxRow) InboxRow {
		req := requestFromInternal(&r.ApprovalRequest)
		return InboxRow{Request: req, Cursor: InboxCursor{Rank: r.Rank, Deadline: r.DeadlineKey, CreatedAt: req.CreatedAt, ID: req.ID}}
	}), nil
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
	for _, tier := range []string{"explicit", "batched"} {
		n, err := queries.RequestCountPendingTier(ctx, db, dbsqlc.RequestCountPendingTierParams{Tier: tier, Cap: InboxCountCap})
		if err != nil {
			return nil, fmt.Errorf("count pending: %w", interpret(err))
		}
		out = append(out, TierCount{Tier: vocab.Tier(tier), Count: int(n), Capped: n >= InboxCountCap})
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
	if p.Limit <= 0 || p.Limit > 200 {
		p.Limit = 50
	}
	return requestsResult(queries.RequestList(ctx, db, dbsqlc.RequestListParams{Status: p.Status, Tier: p.Tier,
		AfterTime: p.AfterTime, AfterID: afterID(p.AfterTime, p.AfterID), RowLimit: int32(p.Limit)}))
}
