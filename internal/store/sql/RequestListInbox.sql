-- RequestListInbox: pending requests in inbox order, one keyset page.
--
-- The order is the index approval_requests_inbox (migrations/00006): the
-- lateral k is the one definition here of its rank and deadline key, written
-- exactly as the expressions of the index, so that the query walks the index in
-- order and stops at the limit. Change both together; TestInbox/UsesIndex
-- checks the plan. sqlc cannot resolve the columns of a lateral subquery, so this
-- query is run by hand (store/inbox.go) and scanned by name. The filter is
-- inbox_filter.sql.
SELECT approval_requests.*, k.rank, k.deadline_key
FROM approval_requests,
    LATERAL (SELECT
        (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END) AS rank,
        (coalesce(deadline, 'infinity'::timestamptz)) AS deadline_key) k
WHERE /* filter */
    -- Without a cursor (NULLs) the keyset starts before every row (no rank
    -- is below 0); written without OR so that a generic plan still seeks
    -- the index to the cursor.
    AND (k.rank, k.deadline_key, created_at, id) >
        (coalesce(@after_rank::int, -1), coalesce(@after_deadline::timestamptz, '-infinity'::timestamptz),
         coalesce(@after_created_at::timestamptz, '-infinity'::timestamptz),
         coalesce(@after_id::uuid, '00000000-0000-0000-0000-000000000000'::uuid))
ORDER BY k.rank, k.deadline_key, created_at, id
LIMIT @row_limit
