-- AuditList: audit events newest first, before an id (0 for the first page),
-- up to a limit (NULL for all). Run by hand (store/audit_query.go) so that
-- exports of any size stream in constant memory; the filter is
-- audit_filter.sql.
SELECT id, coalesce(c.seq, 0) AS seq, at, actor, kind, subject_type, subject_id, run_id::text AS run_id,
    details::text AS details_text, (extract(epoch FROM at) * 1000000)::bigint AS at_micros, c.prev_hash, c.hash
FROM audit_events
LEFT JOIN audit_chain c ON c.event_id = audit_events.id
WHERE (@before_id::bigint = 0 OR id < @before_id::bigint) AND /* filter */
ORDER BY id DESC
LIMIT @row_limit
