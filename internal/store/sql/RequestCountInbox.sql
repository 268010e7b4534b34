-- RequestCountInbox: pending requests of one tier that the inbox's filter
-- (inbox_filter.sql, without its tier block: the ranks say the tier) lets
-- through, counted up to a cap: each LIMIT stops its scan at the cap
-- whatever the table's size, and the caller keeps the cap. Two parts: the
-- tier's own rank, whose rows are all of that tier, and the escalated
-- (rank 0), of either tier. Neither names a column the inbox indexes lack
-- (they INCLUDE tier, escalated_at and the columns of "I can decide"; the
-- role indexes of "I can decide", migration 00034, hold the role condition
-- in their predicate and INCLUDE the rest), so that under any filter but
-- "Claimed by me" the count reads only the index. Run by hand (store/inbox.go)
-- because it shares the filter's text with RequestListInbox.sql.
SELECT count(*)::int FROM (
    (SELECT 1 FROM approval_requests
    WHERE /* filter */
        AND (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END) = @count_rank::int
    LIMIT @cap)
    UNION ALL
    (SELECT 1 FROM approval_requests
    WHERE /* filter */
        AND (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END) = 0
        AND tier = @count_tier::text
    LIMIT @cap)
) capped
