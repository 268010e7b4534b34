-- name: RunEventInsert :one
INSERT INTO run_events (run_id, name, idempotency_key, payload, sent_by)
VALUES (@run_id, @name, @idempotency_key, @payload, @sent_by)
ON CONFLICT (run_id, name, idempotency_key) DO NOTHING
RETURNING *;

-- name: RunEventGetByKey :one
SELECT * FROM run_events WHERE run_id = @run_id AND name = @name AND idempotency_key = @idempotency_key;

-- name: RunEventNextLock :one
-- The oldest event of this name that no wait has consumed.
SELECT * FROM run_events WHERE run_id = @run_id AND name = @name AND consumed_seq IS NULL
ORDER BY id LIMIT 1 FOR UPDATE;

-- name: RunEventConsume :execrows
UPDATE run_events SET consumed_seq = @consumed_seq::int, consumed_at = now()
WHERE id = @id AND consumed_seq IS NULL;

-- name: RunEventList :many
SELECT * FROM run_events WHERE run_id = @run_id ORDER BY id;
