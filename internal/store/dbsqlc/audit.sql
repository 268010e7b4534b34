-- name: AuditAppend :one
INSERT INTO audit_events (actor, kind, subject_type, subject_id, run_id, details)
VALUES (@actor, @kind, @subject_type, @subject_id, @run_id, @details) RETURNING id;

-- name: AuditHead :one
SELECT seq::bigint AS seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1;

-- name: AuditChainLock :exec
SELECT pg_advisory_xact_lock(7243100);

-- name: AuditChainTryLock :one
-- The chainers' lock if no one holds it, without waiting.
SELECT pg_try_advisory_xact_lock(7243100)::boolean AS locked;

-- name: AuditSetChain :exec
-- One statement chains the whole batch.
UPDATE audit_events a SET seq = c.seq, prev_hash = c.prev, hash = c.hash
FROM (SELECT unnest(@ids::bigint[]) AS id, unnest(@seqs::bigint[]) AS seq,
    unnest(@prev_hashes::bytea[]) AS prev, unnest(@hashes::bytea[]) AS hash) c
WHERE a.id = c.id;

-- name: AuditUnchainedCount :one
SELECT count(*) FROM audit_events WHERE seq IS NULL;

-- name: AuditUnchained :many
-- Committed, unchained events in insertion order, locked for the chainer.
-- at_micros and details_text are the exact values the hash covers.
SELECT id, at, actor, kind, subject_type, subject_id, run_id,
    details::text AS details_text, (extract(epoch FROM at) * 1000000)::bigint AS at_micros
FROM audit_events WHERE seq IS NULL ORDER BY id LIMIT @row_limit FOR UPDATE;

-- name: AuditEventSeq :many
-- The chain positions of a run's events about one subject, of the given
-- kinds, first appended first; seq is NULL until the chainer links an event.
-- run_id leads so that the run's index finds them.
SELECT id, seq FROM audit_events
WHERE run_id = @run_id AND subject_type = @subject_type AND subject_id = @subject_id AND kind = ANY(@kinds::text[])
ORDER BY id;
