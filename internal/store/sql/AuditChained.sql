-- AuditChained: the chained events in chain order from a sequence number.
-- Run by hand (store/audit.go) so that a verification of the whole chain
-- streams in constant memory.
SELECT e.id, c.seq, e.at, e.actor, e.kind, e.subject_type, e.subject_id, e.run_id::text AS run_id,
    e.details::text AS details_text, (extract(epoch FROM e.at) * 1000000)::bigint AS at_micros, c.prev_hash, c.hash
FROM audit_chain c JOIN audit_events e ON e.id = c.event_id WHERE c.seq >= @from_seq ORDER BY c.seq
