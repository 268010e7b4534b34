-- name: RequestInsert :one
-- A request not pending (the auto tier) is decided as it is made.
INSERT INTO approval_requests (run_id, step_seq, workflow, tier, status, action_kind, summary, action,
    payload_hash, policy_version, rule, reason, approvals_required, roles, deadline, on_timeout,
    escalate_to, batch_key, started_by, decided_at, decided_by)
VALUES (@run_id, @step_seq, @workflow, @tier, @status::text, @action_kind, @summary, @action,
    @payload_hash, @policy_version, @rule, @reason, @approvals_required, @roles, @deadline, @on_timeout,
    @escalate_to, @batch_key, @started_by, CASE WHEN @status::text = 'pending' THEN NULL ELSE now() END, @decided_by)
RETURNING *;

-- name: RequestGet :one
SELECT * FROM approval_requests WHERE id = @id;

-- name: RequestGetForUpdate :one
SELECT * FROM approval_requests WHERE id = @id FOR UPDATE;

-- name: RequestDecide :one
UPDATE approval_requests SET status = @status, decided_by = @actor, decided_at = now()
WHERE id = @id AND status = 'pending' AND payload_hash = @payload_hash
RETURNING *;

-- name: RequestCancelForRun :exec
UPDATE approval_requests SET status = 'cancelled', decided_by = @actor, decided_at = now()
WHERE run_id = @run_id AND status = 'pending';

-- name: RequestListByRun :many
SELECT * FROM approval_requests WHERE run_id = @run_id ORDER BY created_at, id;

-- name: VoteInsert :exec
INSERT INTO approval_votes (request_id, actor, comment) VALUES (@request_id, @actor, @comment)
ON CONFLICT (request_id, actor) DO NOTHING;

-- name: VoteCount :one
SELECT count(*) FROM approval_votes WHERE request_id = @request_id;

-- name: VoteList :many
SELECT actor FROM approval_votes WHERE request_id = @request_id ORDER BY created_at;

-- name: DecisionInsert :one
INSERT INTO decisions (request_id, run_id, actor, verdict, reason, comment, edited_params, diff,
    payload_hash, policy_version, rule, tier, batch_decision_id, edited_rule, edited_policy_version,
    edited_payload_hash)
VALUES (@request_id, @run_id, @actor, @verdict, @reason, @comment, @edited_params, @diff,
    @payload_hash, @policy_version, @rule, @tier, @batch_decision_id, @edited_rule, @edited_policy_version,
    @edited_payload_hash)
RETURNING *;

-- name: DecisionGetByRequest :one
SELECT * FROM decisions WHERE request_id = @request_id;

-- name: RequestListAuto :many
SELECT * FROM approval_requests WHERE tier = 'auto' ORDER BY created_at DESC, id DESC LIMIT @row_limit;

-- name: RequestList :many
-- Each filter applies only when given.
SELECT * FROM approval_requests
WHERE (@status::text = '' OR status = @status::text)
    AND (@tier::text = '' OR tier = @tier::text)
    -- Without a cursor the keyset starts past every row; written without OR
    -- so that a generic plan still seeks the index to the cursor.
    AND (created_at, id) < (coalesce(sqlc.narg('after_time')::timestamptz, 'infinity'::timestamptz),
        coalesce(sqlc.narg('after_id')::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
ORDER BY created_at DESC, id DESC
LIMIT @row_limit;

-- name: RequestCountPendingTier :one
-- Counting stops at the cap: cheap whatever the table's size.
SELECT count(*) FROM (SELECT 1 FROM approval_requests
    WHERE status = 'pending' AND tier = @tier LIMIT @cap) c;

-- name: RequestLeaveOut :exec
UPDATE approval_requests SET tier = 'explicit', batch_id = NULL, note = @note
WHERE id = @id AND status = 'pending';

-- name: RequestEscalate :execrows
UPDATE approval_requests SET escalated_at = now(), note = @note
WHERE id = @id AND status = 'pending' AND escalated_at IS NULL;

-- name: RequestSetBatch :execrows
UPDATE approval_requests SET batch_id = @batch_id WHERE id = @id;


-- name: VoteListTimed :many
SELECT actor, created_at FROM approval_votes WHERE request_id = @request_id ORDER BY created_at;
