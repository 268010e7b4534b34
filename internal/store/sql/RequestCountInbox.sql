-- RequestCountInbox: pending requests of one tier that the inbox's filter
-- (inbox_filter.sql) lets through, counted up to a cap: the LIMIT stops the
-- scan at the cap whatever the table's size. The ranks the tier can have
-- (escalated, and its own) are a condition on the indexes' rank column, so
-- that counting one tier reads none of the other's rows. Run by hand
-- (store/inbox.go) because it shares the filter's text with
-- RequestListInbox.sql.
SELECT count(*)::int FROM (
    SELECT 1 FROM approval_requests
    WHERE /* filter */ AND tier = @count_tier::text
        AND (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END) = ANY(@count_ranks::int[])
    LIMIT @cap
) capped
