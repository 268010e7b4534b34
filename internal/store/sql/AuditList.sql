-- AuditList: audit events newest first, before an id (0 for the first page),
-- up to a limit (NULL for all). Run by hand (store/audit_query.go) so that
-- exports of any size stream in constant memory; the filter is
-- audit_filter.sql. Each event's chain row (migration 31) is looked up by
-- its key: the lateral subquery with OFFSET 0 keeps the planner from a
-- merge join that sorts the whole chain first, which an export of every
-- event would otherwise do.
SELECT id, coalesce(c.seq, 0) AS seq, at, actor, kind, subject_type, subject_id, run_id::text AS run_id,
    details::text AS details_text, (extract(epoch FROM at) * 1000000)::bigint AS at_micros, c.prev_hash, c.hash
FROM audit_events
LEFT JOIN LATERAL (SELECT seq, prev_hash, hash FROM audit_chain c WHERE c.event_id = audit_events.id OFFSET 0) c ON true
WHERE (@before_id::bigint = 0 OR id < @before_id::bigint) AND /* filter */
ORDER BY id DESC
LIMIT @row_limit
