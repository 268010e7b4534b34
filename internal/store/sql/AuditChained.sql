-- AuditChained: the chained events in chain order from a sequence number.
-- Run by hand (store/audit.go) so that a verification of the whole chain
-- streams in constant memory.
SELECT id, coalesce(seq, 0) AS seq, at, actor, kind, subject_type, subject_id, run_id::text AS run_id,
    details::text AS details_text, (extract(epoch FROM at) * 1000000)::bigint AS at_micros, prev_hash, hash
FROM audit_events WHERE seq >= @from_seq ORDER BY seq
