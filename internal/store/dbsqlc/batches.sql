-- name: BatchJoin :one
-- xmax = 0 tells an inserted row (a batch this call opened) from an updated one.
INSERT INTO batches AS b (group_key, rule, workflow, action_kind, max_size, size, closes_at)
VALUES (@group_key, @rule, @workflow, @action_kind, @max_size, 1, @closes_at)
ON CONFLICT (group_key) WHERE status = 'open' DO UPDATE SET size = b.size + 1
RETURNING id, size, (xmax = 0)::boolean AS opened;

-- name: BatchClose :execrows
UPDATE batches SET status = 'ready', closed_at = now() WHERE id = @id AND status = 'open';

-- name: BatchGet :one
-- pending and deadline describe the items still waiting.
SELECT sqlc.embed(b),
    (SELECT count(*) FROM approval_requests r WHERE r.batch_id = b.id AND r.status = 'pending')::int AS pending,
    (SELECT r.deadline FROM approval_requests r WHERE r.batch_id = b.id AND r.status = 'pending'
        ORDER BY r.deadline NULLS LAST LIMIT 1) AS deadline
FROM batches b WHERE b.id = @id;

-- name: BatchLock :exec
SELECT 1 FROM batches WHERE id = @id FOR UPDATE;

-- name: BatchList :many
SELECT sqlc.embed(b),
    (SELECT count(*) FROM approval_requests r WHERE r.batch_id = b.id AND r.status = 'pending')::int AS pending,
    (SELECT r.deadline FROM approval_requests r WHERE r.batch_id = b.id AND r.status = 'pending'
        ORDER BY r.deadline NULLS LAST LIMIT 1) AS deadline
FROM batches b WHERE b.status = @status
ORDER BY b.closed_at NULLS LAST, b.opened_at, b.id LIMIT @row_limit;

-- name: BatchItems :many
SELECT * FROM approval_requests
WHERE batch_id = @batch_id AND status = 'pending' ORDER BY created_at, id;

-- name: BatchDeciders :many
-- The distinct step sorts only the columns it compares, not the actions.
SELECT * FROM approval_requests WHERE id IN (
    SELECT DISTINCT ON (roles, escalate_to, escalated_at IS NULL) ar.id FROM approval_requests ar
    WHERE ar.batch_id = @batch_id ORDER BY roles, escalate_to, escalated_at IS NULL, ar.id);

-- name: BatchSetDecided :exec
UPDATE batches b SET status = 'decided', decided_at = now(), closed_at = coalesce(b.closed_at, now())
WHERE b.id = @id AND b.status <> 'decided'
AND NOT EXISTS (SELECT 1 FROM approval_requests r WHERE r.batch_id = b.id AND r.status = 'pending');

-- name: BatchDecisionInsert :one
INSERT INTO batch_decisions (batch_id, actor, action, reason) VALUES (@batch_id, @actor, @action, @reason) RETURNING id;

-- name: BatchDecisionFinish :execrows
UPDATE batch_decisions SET approved = @approved, rejected = @rejected, left_out = @left_out, refused = @refused,
    items = @items
WHERE id = @id;

-- name: BatchDecisionGet :one
SELECT * FROM batch_decisions WHERE id = @id;

-- name: BatchDecisionRunStatuses :many
SELECT w.status, count(*)::int AS runs FROM decisions d JOIN workflow_runs w ON w.id = d.run_id
WHERE d.batch_decision_id = @batch_decision_id AND d.verdict <> 'reject' GROUP BY w.status;

-- name: BatchDecisionItems :many
-- Every item of the batch, and the items the decision left out of it (named
-- in ids), with the verdict the batch decision gave each, if any.
SELECT r.id, r.summary, r.status, coalesce(d.verdict, '')::text AS verdict
FROM approval_requests r
LEFT JOIN decisions d ON d.request_id = r.id AND d.batch_decision_id = @batch_decision_id::uuid
WHERE r.batch_id = @batch_id::uuid OR r.id = ANY(@ids::uuid[])
ORDER BY r.created_at, r.id;
