-- name: RequestListInbox :many
-- The inbox's order is the index approval_requests_inbox (migration 00006):
-- the lateral k defines its rank and deadline key once, written exactly as
-- the index's expressions, so that this query walks the index in order and
-- stops at the limit. Change both together; TestInbox/UsesIndex checks it.
SELECT sqlc.embed(approval_requests), k.rank, k.deadline_key::text AS deadline_key
FROM approval_requests,
    LATERAL (SELECT
        (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END) AS rank,
        (coalesce(deadline, 'infinity'::timestamptz)) AS deadline_key) k
WHERE status = 'pending'
    AND (@workflow::text = '' OR workflow = @workflow::text)
    AND (@rule::text = '' OR rule = @rule::text)
    AND (@tier::text = '' OR tier = @tier::text)
    AND (sqlc.narg('created_before')::timestamptz IS NULL OR created_at <= sqlc.narg('created_before')::timestamptz)
    AND (sqlc.narg('after_rank')::int IS NULL
        OR (k.rank, k.deadline_key, created_at, id) > (sqlc.narg('after_rank')::int,
            sqlc.narg('after_deadline')::text::timestamptz, sqlc.narg('after_created_at')::timestamptz,
            sqlc.narg('after_id')::uuid))
ORDER BY k.rank, k.deadline_key, created_at, id
LIMIT @row_limit;
