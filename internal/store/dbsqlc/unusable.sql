-- name: UnusableInsert :one
INSERT INTO run_unusable (run_id, workflow, category, reason, flagged_by)
VALUES (@run_id, @workflow, @category, @reason, @flagged_by)
RETURNING *;

-- name: UnusableGet :one
SELECT * FROM run_unusable WHERE run_id = @run_id;

-- name: UnusableList :many
-- Newest first, keyset paged by (created_at, run_id); optional category and
-- workflow. Each flag carries its run's business key, which people know the
-- run by (the id is for links).
SELECT sqlc.embed(u), r.business_key
FROM run_unusable u
JOIN workflow_runs r ON r.id = u.run_id
WHERE (@category::text = '' OR u.category = @category)
    AND (@workflow::text = '' OR u.workflow = @workflow)
    AND (NOT @paged::boolean OR (u.created_at, u.run_id) < (@before_at::timestamptz, @before_id::uuid))
ORDER BY u.created_at DESC, u.run_id DESC
LIMIT @row_limit;
