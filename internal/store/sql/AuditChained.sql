-- AuditChained: the chained events in chain order from a sequence number.
-- Run by hand (store/audit.go) so that a verification of the whole chain
-- streams in constant memory. The chain (audit_chain, migration 31) is read
-- in seq order and each event fetched by its key: the lateral subquery with
-- OFFSET 0 keeps the planner from a hash join and a sort of the whole chain,
-- which spilled to disk and returned nothing until it had read everything.
SELECT e.id, c.seq, e.at, e.actor, e.kind, e.subject_type, e.subject_id, e.run_id::text AS run_id,
    e.details::text AS details_text, (extract(epoch FROM e.at) * 1000000)::bigint AS at_micros, c.prev_hash, c.hash
FROM audit_chain c
CROSS JOIN LATERAL (SELECT * FROM audit_events e WHERE e.id = c.event_id OFFSET 0) e
WHERE c.seq >= @from_seq ORDER BY c.seq
