package store_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/approval"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// TestInboxFilterPlans checks every combination of the inbox's filters (the
// page's six: tier, workflow, rule, age, "I can decide", "Claimed by me") on
// a table of 30,000 requests, 24,000 of them pending: each listing statement
// (one per rank the page reads) and each tier count walks the index that
// sql/inbox_filter.sql names for it (a count without claims reading only
// the index), with no sequential scan, and a listing
// takes its order from the index unless it sorts a few hundred rows at most
// (escalated ones, claimed ones, few in a workflow and rule); under a custom plan and a generic one
// alike. It also checks, for every combination, that the first two pages are
// the rows a plain query in inbox order finds.
func TestInboxFilterPlans(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run := b.run(t, "w")
	// 4 workflows, 7 rules, a third batched, 1% escalated (half of them to
	// approvers), 10% for approvers only, 5% started by ann, half with a
	// deadline, created 3 s apart (25 h in all, so that "waiting ≥ 24h" keeps
	// 4%), one in five decided; ann has given the first approval of 1%.
	_, err := b.pool.Exec(b.ctx, `INSERT INTO approval_requests (run_id, step_seq, workflow, tier, status, action_kind,
			summary, action, payload_hash, policy_version, rule, reason, roles, escalated_at, escalate_to, deadline, started_by, created_at)
		SELECT $1, n, 'w' || n % 4, CASE WHEN n % 3 = 0 THEN 'batched' ELSE 'explicit' END,
			CASE WHEN n % 5 = 0 THEN 'approved' ELSE 'pending' END, 'a', 's', '{}', 'h', 1, 'r' || n % 7, 'r',
			CASE WHEN n % 10 = 1 THEN '{approver}'::text[] ELSE '{}' END,
			CASE WHEN n % 100 = 7 THEN now() END, CASE WHEN n % 200 = 7 THEN '{approver}'::text[] ELSE '{}' END,
			CASE WHEN n % 2 = 0 THEN now() + (n % 500) * interval '1 minute' END,
			CASE WHEN n % 20 = 3 THEN 'ann@example.com' ELSE 'test' END,
			now() - n * interval '3 seconds'
		FROM generate_series(1, 30000) n`, run.ID)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `INSERT INTO approval_votes (request_id, actor)
		SELECT id, 'ann@example.com' FROM approval_requests WHERE step_seq % 100 = 11
		UNION ALL SELECT id, 'bob@example.com' FROM approval_requests WHERE step_seq % 3 = 1`)
	require.NoError(t, err)
	// Vacuumed, as autovacuum leaves a table whose rows have waited a while:
	// the counts' index-only scans depend on it.
	_, err = b.pool.Exec(b.ctx, `VACUUM ANALYZE approval_requests`)
	require.NoError(t, err)
	now := time.Now()
	var claimed []string
	require.NoError(t, pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(b.ctx, `SELECT id FROM approval_requests WHERE status = 'pending' AND step_seq % 97 = 1`)
		if err != nil {
			return err
		}
		claimed, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	}))
	require.Greater(t, len(claimed), 200)
	for _, id := range claimed {
		_, err := store.ClaimSet(b.ctx, b.pool, id, "ann@example.com", now)
		require.NoError(t, err)
	}

	// explain plans query under mode; noSeq turns sequential scans off, for
	// the counts: on a table this small, reading it until 1,000 rows of a
	// tier pass is cheap, so the question asked is whether an index serves
	// the count at all (with none, the plan is still a sequential scan).
	explain := func(t *testing.T, mode, query string, args pgx.NamedArgs, noSeq bool) string {
		t.Helper()
		var plan string
		require.NoError(t, pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(b.ctx, "SET LOCAL plan_cache_mode = "+mode); err != nil {
				return err
			}
			if _, err := tx.Exec(b.ctx, fmt.Sprintf("SET LOCAL enable_seqscan = %t", !noSeq)); err != nil {
				return err
			}
			rows, err := tx.Query(b.ctx, "EXPLAIN (FORMAT TEXT) "+query, args)
			if err != nil {
				return err
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			plan = strings.Join(lines, "\n")
			return err
		}))
		return plan
	}
	uses := func(plan, index string) bool {
		return regexp.MustCompile(`(using|on) ` + index + `\s`).MatchString(plan)
	}
	// byAge reports whether plan reads by age: the age filter then keeps few
	// enough rows that the planner reads those from an index by created_at.
	byAge := func(p store.InboxParams, plan string) bool {
		return p.OlderThan > 0 && (uses(plan, "approval_requests_status") || uses(plan, "approval_requests_recent") ||
			uses(plan, "approval_requests_waiting"))
	}
	// sortsFew reports whether every sort in plan sorts at most a few hundred
	// rows (as the planner estimates them): those a filter's index found, not
	// a whole rank. Without a filter's index the plan would sort thousands.
	sortRows := regexp.MustCompile(`Sort  \(cost=[0-9.]+ rows=(\d+)`)
	sortsFew := func(plan string) bool {
		for _, m := range sortRows.FindAllStringSubmatch(plan, -1) {
			var n int
			fmt.Sscan(m[1], &n)
			if n > 500 {
				return false
			}
		}
		return true
	}

	for mask := range 1 << 6 {
		// "I can decide" is per role: each role that decides has its index.
		roles := []vocab.Role{vocab.RoleReviewer}
		if mask&(1<<4) != 0 {
			roles = []vocab.Role{vocab.RoleReviewer, vocab.RoleApprover, vocab.RoleAdmin}
		}
		for _, role := range roles {
			p := store.InboxParams{Actor: "ann@example.com", ActorRole: role, Now: now}
			var name []string
			on := func(bit int, label string) bool {
				if mask&(1<<bit) == 0 {
					return false
				}
				name = append(name, label)
				return true
			}
			if on(0, "tier") {
				p.Tier = string(vocab.TierBatched)
			}
			if on(1, "workflow") {
				p.Workflow = "w1"
			}
			if on(2, "rule") {
				p.Rule = "r2"
			}
			if on(3, "age") {
				p.OlderThan = 24 * time.Hour
			}
			p.CanDecide = on(4, "can-"+string(role))
			p.ClaimedByMe = on(5, "claimed")
			want := wantInboxIndex(p)
			// The table at the top of sql/inbox_filter.sql names it.
			require.Regexp(t, `(?m)^--.*\s`+want+`(\s|,|$)`, store.InboxFilterSQL, "inbox_filter.sql names %s", want)
			checkInboxFilterPlans(t, b, p, strings.Join(append([]string{"none"}, name...), "+"), want, claimed, explain, uses, byAge, sortsFew)
		}
	}
}

// wantInboxIndex is the index sql/inbox_filter.sql names for p's
// combination of filters: "I can decide" walks the actor's role's index
// unless a workflow or rule narrows more (an admin decides everything, so
// the filter is no narrower than none).
func wantInboxIndex(p store.InboxParams) string {
	switch {
	case p.ClaimedByMe:
		return "approval_requests_pkey"
	case p.Workflow != "" && p.Rule != "":
		return "approval_requests_inbox_workflow_rule"
	case p.Workflow != "":
		return "approval_requests_inbox_workflow"
	case p.Rule != "":
		return "approval_requests_inbox_rule"
	case p.CanDecide && p.ActorRole != vocab.RoleAdmin:
		return "approval_requests_inbox_can_" + string(p.ActorRole)
	}
	return "approval_requests_inbox"
}

// checkInboxFilterPlans is TestInboxFilterPlans for one combination.
func checkInboxFilterPlans(t *testing.T, b *testBundle, p store.InboxParams, name, want string, claimed []string,
	explain func(t *testing.T, mode, query string, args pgx.NamedArgs, noSeq bool) string,
	uses func(plan, index string) bool, byAge func(p store.InboxParams, plan string) bool, sortsFew func(plan string) bool) {
	now := p.Now
	{
		t.Run(name, func(t *testing.T) {
			var claims []string
			if p.ClaimedByMe {
				claims = claimed
			}
			for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
				for _, rank := range []int{0, 1, 2} {
					if p.Tier != "" && rank == 1 {
						continue // the listing skips the other tier's rank
					}
					query, args := store.InboxListQuery(p, claims, rank, 50)
					plan := explain(t, mode, query, args, false)
					require.NotContains(t, plan, "Seq Scan", "%s, rank %d:\n%s", mode, rank, plan)
					ok := uses(plan, want) || byAge(p, plan)
					if rank == 0 || p.ClaimedByMe {
						// Few rows (escalated, claimed): any of the filter's
						// indexes finds them, and the planner picks one.
						ok = ok || regexp.MustCompile(`(using|on) approval_requests_(inbox|pkey)`).MatchString(plan)
					}
					require.True(t, ok, "%s, rank %d: want %s:\n%s", mode, rank, want, plan)
					require.True(t, sortsFew(plan), "%s, rank %d: the index gives the order, or the filter keeps few rows:\n%s", mode, rank, plan)
				}
				for _, tier := range []vocab.Tier{vocab.TierExplicit, vocab.TierBatched} {
					if p.Tier != "" && string(tier) != p.Tier {
						continue // counted as 0 without a query
					}
					query, args := store.InboxCountQuery(p, claims, tier)
					plan := explain(t, mode, query, args, true)
					require.NotContains(t, plan, "Seq Scan", "%s, count %s:\n%s", mode, tier, plan)
					ok := uses(plan, want) || byAge(p, plan)
					if p.ClaimedByMe {
						ok = ok || regexp.MustCompile(`(using|on) approval_requests_(inbox|pkey)`).MatchString(plan)
					}
					if !p.ClaimedByMe && !byAge(p, plan) {
						require.Contains(t, plan, "Index Only Scan using "+want+" ", "%s, count %s: only the index is read:\n%s", mode, tier, plan)
					}
					require.True(t, ok, "%s, count %s: want %s:\n%s", mode, tier, want, plan)
				}
			}

			// The first two pages are what a plain query in inbox order
			// finds, "I can decide" applied by approval.CanDecide (the
			// decide path's own check), the starter and ann's votes.
			var ref []string
			require.NoError(t, pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
				var before *time.Time
				if p.OlderThan > 0 {
					tb := now.Add(-p.OlderThan)
					before = &tb
				}
				rows, err := tx.Query(b.ctx, `SELECT id::text, roles, escalated_at, escalate_to, started_by,
						EXISTS (SELECT 1 FROM approval_votes v WHERE v.request_id = r.id AND v.actor = 'ann@example.com')
					FROM approval_requests r
					WHERE status = 'pending' AND ($1 = '' OR tier = $1) AND ($2 = '' OR workflow = $2) AND ($3 = '' OR rule = $3)
						AND ($4::timestamptz IS NULL OR created_at <= $4)
						AND (NOT $5 OR id = ANY($6::uuid[]))
					ORDER BY (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
						coalesce(deadline, 'infinity'), created_at, id`, p.Tier, p.Workflow, p.Rule, before, p.ClaimedByMe, claimed)
				if err != nil {
					return err
				}
				for rows.Next() && len(ref) < 80 {
					var req store.Request
					var voted bool
					var rs, es []string
					if err := rows.Scan(&req.ID, &rs, &req.EscalatedAt, &es, &req.StartedBy, &voted); err != nil {
						return err
					}
					for _, r := range rs {
						req.Roles = append(req.Roles, vocab.Role(r))
					}
					for _, r := range es {
						req.EscalateTo = append(req.EscalateTo, vocab.Role(r))
					}
					if p.CanDecide && (!approval.CanDecide(&req, []vocab.Role{p.ActorRole}) || req.StartedBy == p.Actor || voted) {
						continue
					}
					ref = append(ref, req.ID)
				}
				rows.Close()
				return rows.Err()
			}))
			var got []string
			q := p
			q.Limit = 40
			for range 2 {
				page, err := store.RequestListInbox(b.ctx, b.pool, q)
				require.NoError(t, err)
				for _, r := range page {
					got = append(got, r.Request.ID)
				}
				if len(page) < q.Limit {
					break
				}
				q.After = &page[len(page)-1].Cursor
			}
			require.Equal(t, ref, got, "first two pages")
			counts, err := store.RequestCountInbox(b.ctx, b.pool, p)
			require.NoError(t, err)
			require.Equal(t, len(ref) > 0, counts[0].Count+counts[1].Count > 0, fmt.Sprint(counts))
			if len(ref) < 80 {
				require.Equal(t, len(ref), counts[0].Count+counts[1].Count, "the counts are the rows listed")
			}
		})
	}
}
