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
		"actor": p.Actor, "claimed_ids": p.claimedIDs}
	if p.OlderThan > 0 {
		args["created_before"] = p.Now.Add(-p.OlderThan)
	}
	return args
}

// filters says which of inbox_filter.sql's "-- when" blocks p sets.
func (p InboxParams) filters() map[string]bool {
	return map[string]bool{"workflow": p.Workflow != "", "rule": p.Rule != "", "tier": p.Tier != "",
		"age": p.OlderThan > 0, "can": p.CanDecide, "claimed": p.ClaimedByMe}
}

// inboxFilterBlock is a part of sql/inbox_filter.sql: the lines before the
// first "-- when" line (when is ""), or those after one up to the next.
type inboxFilterBlock struct{ when, text string }

// inboxFilterBlocks is sql/inbox_filter.sql cut at its "-- when" lines.
var inboxFilterBlocks = func() []inboxFilterBlock {
	out := []inboxFilterBlock{{}}
	for line := range strings.Lines(inboxFilterSQL) {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "-- when "); ok {
			out = append(out, inboxFilterBlock{when: name})
			continue
		}
		out[len(out)-1].text += line
	}
	return out
}()

// withInboxFilter puts p's filter where a query says /* filter */: the
// always-on part of sql/inbox_filter.sql and the blocks of the filters p
// sets, so that one definition serves the listing and the counts.
func withInboxFilter(query string, p InboxParams) string {
	on := p.filters()
	var b strings.Builder
	for _, blk := range inboxFilterBlocks {
		if blk.when == "" || on[blk.when] {
			b.WriteString(blk.text)
		}
	}
	filter := strings.ReplaceAll(b.String(), "'ACTOR_ROLE'", roleLiteral(p.ActorRole))
	return strings.ReplaceAll(query, "/* filter */", "("+filter+"\n)")
}

// roleLiteral is role as an SQL string constant for the "can" block of
// sql/inbox_filter.sql, which needs a constant to use the role's index.
// Only the closed set of vocab.Role is written out; anything else becomes
// NULL, which lets nothing through (the caller answers "none" for roles
// that decide nothing before any query, see noneFor).
func roleLiteral(role vocab.Role) string {
	if !role.Valid() {
		return "NULL"
	}
	return "'" + string(role) + "'"
}

// tierRank is the inbox rank of a tier's requests until they are escalated
// (rank 0): the rank expression of sql/RequestListInbox.sql.
func tierRank(t vocab.Tier) int {
	switch t {
	case vocab.TierExplicit:
		return 1
	case vocab.TierBatched:
		return 2
	}
	return -1
}

// inboxRanks are the ranks of the inbox's order, first to last.
var inboxRanks = []int{0, 1, 2}

// listQuery is the statement and arguments that list up to limit requests of
// one rank after p's cursor (the cursor counts only in its own rank).
func (p InboxParams) listQuery(rank, limit int) (string, pgx.NamedArgs) {
	args := p.filterArgs()
	args["rank"], args["row_limit"] = rank, limit
	args["after_deadline"], args["after_created_at"], args["after_id"] = nil, nil, nil
	if c := p.After; c != nil && c.Rank == rank {
		args["after_deadline"], args["after_created_at"], args["after_id"] = c.Deadline, c.CreatedAt, c.ID
	}
	return withInboxFilter(requestListInboxSQL, p), args
}

// countQuery is the statement and arguments that count p's requests of a
// tier, up to twice the cap (the caller keeps the cap). A tier filter other
// than tier is the caller's to answer (noneFor).
func (p InboxParams) countQuery(tier vocab.Tier) (string, pgx.NamedArgs) {
	p.Tier = "" // the ranks and the escalated part's condition say the tier
	args := p.filterArgs()
	args["count_tier"], args["count_rank"], args["cap"] = string(tier), tierRank(tier), InboxCountCap
	return withInboxFilter(requestCountInboxSQL, p), args
}

// noneFor reports whether p's filters leave nothing without a query: a tier
// other than the one asked, or "I can decide" for a role that decides nothing.
func (p InboxParams) noneFor(tier vocab.Tier) bool {
	return (p.Tier != "" && tier != "" && vocab.Tier(p.Tier) != tier) || (p.CanDecide && !p.ActorRole.CanDecide())
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

// inboxRow is a row of requestListInboxSQL.
type inboxRow struct {
	dbsqlc.ApprovalRequest
	Rank        int                `db:"rank"`
	DeadlineKey pgtype.Timestamptz `db:"deadline_key"`
}

// RequestListInbox returns pending requests, escalated first, then explicit,
// then by deadline (none last), then oldest first, one keyset page at a time.
// It reads one rank at a time (escalated, explicit, batched) until the page
// is full: within a rank, each filter's index gives the order after its
// equalities (sql/inbox_filter.sql names them).
func RequestListInbox(ctx context.Context, db DBTX, p InboxParams) ([]InboxRow, error) {
	if p.Limit <= 0 || p.Limit > 200 {
		p.Limit = 50
	}
	p, none, err := p.withClaims(ctx, db)
	if err != nil || none {
		return nil, err
	}
	if p.noneFor("") {
		return nil, nil
	}
	var got []*inboxRow
	for _, rank := range inboxRanks {
		if len(got) == p.Limit {
			break
		}
		if p.After != nil && rank < p.After.Rank || p.Tier != "" && rank != 0 && rank != tierRank(vocab.Tier(p.Tier)) {
			continue
		}
		query, args := p.listQuery(rank, p.Limit-len(got))
		rows, err := db.Query(ctx, query, args)
		if err != nil {
			return nil, fmt.Errorf("list inbox: %w", interpret(err))
		}
		some, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[inboxRow])
		if err != nil {
			return nil, fmt.Errorf("list inbox: %w", interpret(err))
		}
		got = append(got, some...)
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
	for _, tier := range []vocab.Tier{vocab.TierExplicit, vocab.TierBatched} {
		if none || p.noneFor(tier) {
			out = append(out, TierCount{Tier: tier})
			continue
		}
		query, args := p.countQuery(tier)
		var n int
		if err := db.QueryRow(ctx, query, args).Scan(&n); err != nil {
			return nil, fmt.Errorf("count inbox: %w", interpret(err))
		}
		n = min(n, InboxCountCap) // each of the count's two parts stops at the cap
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
