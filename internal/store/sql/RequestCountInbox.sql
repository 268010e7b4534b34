-- RequestCountInbox: pending requests of one tier that the inbox's filter
-- (inbox_filter.sql) lets through, counted up to a cap: the LIMIT stops the
-- scan at the cap whatever the table's size. Run by hand (store/inbox.go)
-- because it shares the filter's text with RequestListInbox.sql.
SELECT count(*)::int FROM (
    SELECT 1 FROM approval_requests
    WHERE /* filter */ AND tier = @count_tier::text
    LIMIT @cap
) capped
