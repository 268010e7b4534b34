-- name: AuditAppend :one
INSERT INTO audit_events (actor, kind, subject_type, subject_id, run_id, details)
VALUES (@actor, @kind, @subject_type, @subject_id, @run_id, @details) RETURNING id;

-- name: AuditHead :one
SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1;

-- name: AuditChainLock :exec
SELECT pg_advisory_xact_lock(7243100);

-- name: AuditChainTryLock :one
-- The chainers' lock if no one holds it, without waiting.
SELECT pg_try_advisory_xact_lock(7243100)::boolean AS locked;

-- name: AuditSetChain :exec
-- One statement chains the whole batch: narrow chain rows in, the events out
-- of the queue (its guard, migration 31, sees the chain rows: after-statement
-- triggers see the whole statement's writes). The events are not touched.
WITH chained AS (
    INSERT INTO audit_chain (seq, event_id, prev_hash, hash)
    SELECT unnest(@seqs::bigint[]), unnest(@ids::bigint[]), unnest(@prev_hashes::bytea[]), unnest(@hashes::bytea[])
    RETURNING event_id
)
DELETE FROM audit_unchained u USING chained c WHERE u.event_id = c.event_id;

-- name: AuditUnchainedCount :one
SELECT count(*) FROM audit_unchained;

-- name: AuditOffChainCount :one
-- Events on neither the chain nor its queue (migration 31): none in normal
-- operation, where an event is queued in its own transaction and leaves the
-- queue in the statement that chains it. One here lost its chain row or its
-- queue row behind the guards, or was inserted without the queue's trigger,
-- and no verification of the chain would cover it.
SELECT count(*) FROM audit_events e
WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_id = e.id)
    AND NOT EXISTS (SELECT 1 FROM audit_unchained u WHERE u.event_id = e.id);

-- name: AuditUnchained :many
-- Committed, unchained events in insertion order, each row with the chain's
-- head as the same snapshot sees it (AuditHead's; 0 and an empty hash when
-- nothing is chained), so that a chainer reads both in one round trip. No
-- row lock: the caller holds the chainers' advisory lock, and events never
-- change. at_micros and details_text are the exact values the hash covers.
SELECT e.id, e.at, e.actor, e.kind, e.subject_type, e.subject_id, e.run_id,
    e.details::text AS details_text, (extract(epoch FROM e.at) * 1000000)::bigint AS at_micros,
    coalesce((SELECT seq FROM audit_chain ORDER BY seq DESC LIMIT 1), 0)::bigint AS head_seq,
    coalesce((SELECT hash FROM audit_chain ORDER BY seq DESC LIMIT 1), ''::bytea)::bytea AS head_hash
FROM audit_unchained u JOIN audit_events e ON e.id = u.event_id ORDER BY u.event_id LIMIT @row_limit;

-- name: AuditEventSeq :many
-- The chain positions of a run's events about one subject, of the given
-- kinds, first appended first; seq is NULL until the chainer links an event.
-- run_id leads so that the run's index finds them.
SELECT e.id, c.seq FROM audit_events e LEFT JOIN audit_chain c ON c.event_id = e.id
WHERE e.run_id = @run_id AND e.subject_type = @subject_type AND e.subject_id = @subject_id AND e.kind = ANY(@kinds::text[])
ORDER BY e.id;
