-- name: UnusableInsert :one
INSERT INTO run_unusable (run_id, workflow, category, reason, flagged_by)
VALUES (@run_id, @workflow, @category, @reason, @flagged_by)
RETURNING *;

-- name: UnusableGet :one
SELECT * FROM run_unusable WHERE run_id = @run_id;

-- name: UnusableList :many
-- Newest first, keyset paged by (created_at, run_id); optional category and workflow.
SELECT * FROM run_unusable
WHERE (@category::text = '' OR category = @category)
    AND (@workflow::text = '' OR workflow = @workflow)
    AND (NOT @paged::boolean OR (created_at, run_id) < (@before_at::timestamptz, @before_id::uuid))
ORDER BY created_at DESC, run_id DESC
LIMIT @row_limit;
