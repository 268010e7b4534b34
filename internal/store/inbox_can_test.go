package store_test

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// TestInboxCanDecide holds "I can decide" to what the decide path allows,
// and its walk to the rows the actor's role may decide.
func TestInboxCanDecide(t *testing.T) {
	t.Parallel()

	// canIDs lists the ids "I can decide" shows actor (of role) and checks
	// the counts agree.
	canIDs := func(t *testing.T, b *testBundle, actor string, role vocab.Role) []string {
		t.Helper()
		p := store.InboxParams{Actor: actor, ActorRole: role, CanDecide: true, Limit: 200, Now: time.Now()}
		rows, err := store.RequestListInbox(b.ctx, b.pool, p)
		require.NoError(t, err)
		ids := []string{}
		for _, r := range rows {
			ids = append(ids, r.Request.ID)
		}
		counts, err := store.RequestCountInbox(b.ctx, b.pool, p)
		require.NoError(t, err)
		if len(ids) < p.Limit {
			require.Equal(t, len(ids), counts[0].Count+counts[1].Count, "the counts follow the list")
		}
		return ids
	}

	t.Run("EachRoleVotesOwnRunsAndChanges", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		run := b.run(t, "w")
		mk := func(seq int, roles string) *store.Request {
			req := b.request(t, run, seq, requestOpts{})
			_, err := b.pool.Exec(b.ctx, `UPDATE approval_requests SET roles = $2::text[] WHERE id = $1`, req.ID, roles)
			require.NoError(t, err)
			return req
		}
		open := mk(1, "{}")              // reviewers and approvers
		approvers := mk(2, "{approver}") // approvers only
		admins := mk(3, "{admin}")       // admins only
		two := mk(4, "{reviewer}")       // a two-approver rule: ann approves first
		own := mk(5, "{}")               // a run ann started
		_, err := b.pool.Exec(b.ctx, `UPDATE approval_requests SET started_by = 'ann@example.com' WHERE id = $1`, own.ID)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `INSERT INTO approval_votes (request_id, actor) VALUES ($1, 'ann@example.com')`, two.ID)
		require.NoError(t, err)

		require.ElementsMatch(t, []string{open.ID}, canIDs(t, b, "ann@example.com", vocab.RoleReviewer),
			"not the approvers' nor the admins', not one she approved first, not her own run")
		require.ElementsMatch(t, []string{open.ID, two.ID, own.ID}, canIDs(t, b, "rey@example.com", vocab.RoleReviewer))
		require.ElementsMatch(t, []string{open.ID, approvers.ID, own.ID}, canIDs(t, b, "abe@example.com", vocab.RoleApprover))
		require.ElementsMatch(t, []string{open.ID, approvers.ID, admins.ID}, canIDs(t, b, "ann@example.com", vocab.RoleAdmin),
			"an admin decides every rule, but not a run of her own nor one she approved")
		require.Empty(t, canIDs(t, b, "vic@example.com", vocab.RoleViewer))

		// Escalated to reviewers, the approvers' request is the reviewers'
		// too; roles changed on the row move it between the indexes at once.
		_, err = b.pool.Exec(b.ctx, `UPDATE approval_requests SET escalated_at = now(), escalate_to = '{reviewer}' WHERE id = $1`, approvers.ID)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `UPDATE approval_requests SET roles = '{approver}' WHERE id = $1`, open.ID)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{approvers.ID}, canIDs(t, b, "ann@example.com", vocab.RoleReviewer))
		require.ElementsMatch(t, []string{open.ID, approvers.ID, own.ID}, canIDs(t, b, "abe@example.com", vocab.RoleApprover))
		// Decided, it is no one's to decide.
		_, err = b.pool.Exec(b.ctx, `UPDATE approval_requests SET status = 'approved' WHERE id = $1`, approvers.ID)
		require.NoError(t, err)
		require.Empty(t, canIDs(t, b, "ann@example.com", vocab.RoleReviewer))
	})

	t.Run("WalkStopsAfterAPage", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		run := b.run(t, "w")
		// 20,000 pending requests, 19 in 20 for approvers only: a reviewer
		// may decide 1,000, and has approved (first of two) many more
		// requests than that, decided long ago, beside others' votes.
		_, err := b.pool.Exec(b.ctx, `INSERT INTO approval_requests (run_id, step_seq, workflow, tier, status, action_kind,
				summary, action, payload_hash, policy_version, rule, reason, roles, deadline, created_at)
			SELECT $1, n, 'w', CASE WHEN n % 3 = 0 THEN 'batched' ELSE 'explicit' END,
				CASE WHEN n > 20000 THEN 'approved' ELSE 'pending' END, 'a', 's', '{}', 'h', 1, 'r', 'r',
				CASE WHEN n % 20 = 0 THEN '{}'::text[] ELSE '{approver}' END,
				CASE WHEN n % 2 = 0 THEN now() + n * interval '1 minute' END, now() - n * interval '1 second'
			FROM generate_series(1, 60000) n`, run.ID)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `INSERT INTO approval_votes (request_id, actor)
			SELECT id, 'ann@example.com' FROM approval_requests WHERE step_seq > 20000
			UNION ALL SELECT id, 'bob@example.com' FROM approval_requests WHERE step_seq % 2 = 1`)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `VACUUM ANALYZE approval_requests, approval_votes`)
		require.NoError(t, err)

		p := store.InboxParams{Actor: "ann@example.com", ActorRole: vocab.RoleReviewer, CanDecide: true, Now: time.Now()}
		// analyze returns the rows every scan node of query's plan read
		// (after its index condition, before its filter) and the buffers.
		analyze := func(t *testing.T, query string, args pgx.NamedArgs) (read int, buffers int) {
			t.Helper()
			var out []byte
			require.NoError(t, pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(b.ctx, "SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
					return err
				}
				return tx.QueryRow(b.ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+query, args).Scan(&out)
			}))
			var plans []struct{ Plan map[string]any }
			require.NoError(t, json.Unmarshal(out, &plans))
			var walk func(n map[string]any)
			walk = func(n map[string]any) {
				if typ, _ := n["Node Type"].(string); regexp.MustCompile(`Scan$`).MatchString(typ) && n["Relation Name"] == "approval_requests" {
					rows, _ := n["Actual Rows"].(float64)
					removed, _ := n["Rows Removed by Filter"].(float64)
					loops, _ := n["Actual Loops"].(float64)
					read += int((rows + removed) * loops)
				}
				for _, c := range n["Plans"].([]any) {
					walk(c.(map[string]any))
				}
			}
			fixPlans(plans[0].Plan)
			walk(plans[0].Plan)
			hit, _ := plans[0].Plan["Shared Hit Blocks"].(float64)
			rd, _ := plans[0].Plan["Shared Read Blocks"].(float64)
			return read, int(hit + rd)
		}
		for _, rank := range []int{1, 2} {
			query, args := store.InboxListQuery(p, nil, rank, 50)
			read, buffers := analyze(t, query, args)
			require.LessOrEqual(t, read, 50, "rank %d: the page's 50 rows and no more are read", rank)
			t.Logf("rank %d page: %d rows read, %d buffers", rank, read, buffers)
		}
		for _, tier := range []vocab.Tier{vocab.TierExplicit, vocab.TierBatched} {
			query, args := store.InboxCountQuery(p, nil, tier)
			read, buffers := analyze(t, query, args)
			t.Logf("%s count: %d rows read, %d buffers", tier, read, buffers)
			require.LessOrEqual(t, read, 1000, "%s: the count reads only requests a reviewer may decide", tier)
		}
		require.Len(t, canIDs(t, b, "ann@example.com", vocab.RoleReviewer), 200)
		counts, err := store.RequestCountInbox(b.ctx, b.pool, p)
		require.NoError(t, err)
		require.Equal(t, 1000, counts[0].Count+counts[1].Count, "every request a reviewer may decide, and no other")

		// Without the role's index (as before migration 00034) the same
		// statements walk the inbox index and refuse most rows (19 in 20 overall): what the
		// index saves, on this database of the test's own.
		_, err = b.pool.Exec(b.ctx, `DROP INDEX approval_requests_inbox_can_reviewer, approval_votes_actor`)
		require.NoError(t, err)
		query, args := store.InboxListQuery(p, nil, 1, 50)
		read, buffers := analyze(t, query, args)
		t.Logf("without the index, rank 1 page: %d rows read, %d buffers", read, buffers)
		require.Greater(t, read, 5*50)
		query, args = store.InboxCountQuery(p, nil, vocab.TierExplicit)
		read, buffers = analyze(t, query, args)
		t.Logf("without the index, explicit count: %d rows read, %d buffers", read, buffers)
		require.Greater(t, read, 5*667)
	})
}

// fixPlans gives every node of an EXPLAIN (FORMAT JSON) plan a "Plans" list,
// empty at the leaves, so that a walk needs no check.
func fixPlans(n map[string]any) {
	cs, ok := n["Plans"].([]any)
	if !ok {
		n["Plans"] = []any{}
		return
	}
	for _, c := range cs {
		fixPlans(c.(map[string]any))
	}
}
