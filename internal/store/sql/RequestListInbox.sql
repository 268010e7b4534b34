-- RequestListInbox: pending requests of one rank in inbox order, one keyset
-- page. The caller (store/inbox.go) reads the ranks in turn until the page is
-- full, with the cursor only in the cursor's own rank.
--
-- The order is that of the index approval_requests_inbox (migrations/00006)
-- and of the filtered ones of migrations/00028, whose rank is equal here: the
-- lateral k is the one definition here of the rank and deadline key, written
-- exactly as the expressions of the indexes, so that the query walks an index
-- in order and stops at the limit. Change them together; TestInbox/UsesIndex
-- and TestInboxFilterPlans check the plans. sqlc cannot resolve the columns of
-- a lateral subquery, so this query is run by hand (store/inbox.go) and
-- scanned by name. The filter is inbox_filter.sql.
SELECT approval_requests.*, k.rank, k.deadline_key
FROM approval_requests,
    LATERAL (SELECT
        (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END) AS rank,
        (coalesce(deadline, 'infinity'::timestamptz)) AS deadline_key) k
WHERE /* filter */
    AND k.rank = @rank::int
    -- Without a cursor (NULLs) the keyset starts before every row of the
    -- rank; written without OR so that a generic plan still seeks the index
    -- to the cursor.
    AND (k.deadline_key, created_at, id) >
        (coalesce(@after_deadline::timestamptz, '-infinity'::timestamptz),
         coalesce(@after_created_at::timestamptz, '-infinity'::timestamptz),
         coalesce(@after_id::uuid, '00000000-0000-0000-0000-000000000000'::uuid))
ORDER BY k.deadline_key, created_at, id
LIMIT @row_limit
