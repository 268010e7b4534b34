package store

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
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
	// Actor and ActorRole are the signed-in reviewer, for the two filters
	// below (approval.Actor's name and role).
	Actor     string
	ActorRole vocab.Role
	// CanDecide keeps the requests the actor may decide now: roles allow it,
	// not a run the actor started, no approval already given.
	CanDecide bool
	// ClaimedByMe keeps the requests the actor holds a live claim on.
	ClaimedByMe bool
	claimedIDs  []string // the actor's live claims, read by withClaims
	After       *InboxCursor
	Limit       int
	Now         time.Time
}

// filterArgs are the named arguments of sql/inbox_filter.sql.
func (p InboxParams) filterArgs() pgx.NamedArgs {
	args := pgx.NamedArgs{"workflow": p.Workflow, "rule": p.Rule, "tier": p.Tier, "created_before": nil,
		"can_decide": p.CanDecide, "claimed_by_me": p.ClaimedByMe, "actor": p.Actor, "actor_role": string(p.ActorRole),
		"claimed_ids": p.claimedIDs}
	if p.OlderThan > 0 {
		args["created_before"] = p.Now.Add(-p.OlderThan)
	}
	return args
}

// InboxRow is a pending request as the inbox lists it.
type InboxRow struct {
	Request *Request
	Cursor  InboxCursor
}

var (
	//go:embed sql/inbox_filter.sql
	inboxFilterSQL string
	//go:embed sql/RequestListInbox.sql
	requestListInboxSQL string
	//go:embed sql/RequestCountInbox.sql
	requestCountInboxSQL string
)

// maxClaimsListed bounds the claims "Claimed by me" considers: nobody
// reviews more at once, and the list is passed to the query as an array.
const maxClaimsListed = 500

// withClaims reads the actor's live claims when the filter asks for them;
// none reports that the filter leaves nothing, with no need to query.
func (p InboxParams) withClaims(ctx context.Context, db DBTX) (_ InboxParams, none bool, _ error) {
	if !p.ClaimedByMe {
		return p, false, nil
	}
	ids, err := queries.ClaimListByActor(ctx, db, dbsqlc.ClaimListByActorParams{Actor: p.Actor,
		LapsedBefore: p.Now.Add(-ClaimTimeout), RowLimit: maxClaimsListed})
	if err != nil {
		return p, false, fmt.Errorf("list my claims: %w", interpret(err))
	}
	p.claimedIDs = ids
	return p, len(ids) == 0, nil
}

// withInboxFilter puts the inbox filter where a query says /* filter */: one
// definition serves the listing and the counts.
func withInboxFilter(query string) string {
	return strings.Replace(query, "/* filter */", "("+inboxFilterSQL+"\n)", 1)
}

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
	p, none, err := p.withClaims(ctx, db)
	if err != nil || none {
		return nil, err
	}
	args := p.filterArgs()
	args["row_limit"] = p.Limit
	args["after_rank"], args["after_deadline"], args["after_created_at"], args["after_id"] = nil, nil, nil, nil
	if c := p.After; c != nil {
		args["after_rank"], args["after_deadline"], args["after_created_at"], args["after_id"] = c.Rank, c.Deadline, c.CreatedAt, c.ID
	}
	rows, err := db.Query(ctx, withInboxFilter(requestListInboxSQL), args)
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

// RequestCountInbox counts, per tier, the pending requests that p's filters
// let through (its cursor and limit are ignored), each up to InboxCountCap.
func RequestCountInbox(ctx context.Context, db DBTX, p InboxParams) ([]TierCount, error) {
	p, none, err := p.withClaims(ctx, db)
	if err != nil {
		return nil, err
	}
	var out []TierCount
	query := withInboxFilter(requestCountInboxSQL)
	for _, tier := range []vocab.Tier{vocab.TierExplicit, vocab.TierBatched} {
		if none {
			out = append(out, TierCount{Tier: tier})
			continue
		}
		args := p.filterArgs()
		args["count_tier"], args["cap"] = string(tier), InboxCountCap
		var n int
		if err := db.QueryRow(ctx, query, args).Scan(&n); err != nil {
			return nil, fmt.Errorf("count inbox: %w", interpret(err))
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
	if p.Limit <= 0 || p.Limit > 200 {
		p.Limit = 50
	}
	return requestsResult(queries.RequestList(ctx, db, dbsqlc.RequestListParams{Status: p.Status, Tier: p.Tier,
		AfterTime: p.AfterTime, AfterID: afterID(p.AfterTime, p.AfterID), RowLimit: int32(p.Limit)}))
}
