-- name: RequestInsert :one
-- A request not pending (the auto tier) is decided as it is made.
INSERT INTO approval_requests (run_id, step_seq, workflow, tier, status, action_kind, summary, action,
    payload_hash, policy_version, rule, reason, approvals_required, roles, deadline, on_timeout,
    escalate_to, batch_key, started_by, decided_at, decided_by)
VALUES (@run_id, @step_seq, @workflow, @tier, @status::text, @action_kind, @summary, @action,
    @payload_hash, @policy_version, @rule, @reason, @approvals_required, @roles, @deadline, @on_timeout,
    @escalate_to, @batch_key, @started_by, CASE WHEN @status::text = 'pending' THEN NULL ELSE now() END, @decided_by)
RETURNING *;

-- name: RequestRecordAuto :one
-- An action the policy approves by itself, in one statement and one round
-- trip: the request (already approved), its decision, its decision.auto
-- event and the approval step's record, with the pure steps held before it,
-- and the run's counters, as StepComplete advances them. Nothing is written
-- unless the owner still holds the running run (no row returned). The step's
-- output is the decision the run goes on with, less the two values only
-- this statement knows: the request's id and its time, merged in here.
WITH run AS (
    UPDATE workflow_runs
    SET current_step = @current_step::text, steps_used = GREATEST(workflow_runs.steps_used, @steps_used::int),
        tokens_used = workflow_runs.tokens_used + @tokens_total::int, model_calls = workflow_runs.model_calls + @model_calls::int
    WHERE workflow_runs.id = @run_id AND workflow_runs.status = 'running' AND workflow_runs.lease_owner = @owner
    RETURNING workflow_runs.id
), req AS (
    INSERT INTO approval_requests (run_id, step_seq, workflow, tier, status, action_kind, summary, action,
        payload_hash, policy_version, rule, reason, approvals_required, roles, deadline, on_timeout,
        escalate_to, batch_key, started_by, decided_at, decided_by)
    SELECT run.id, @step_seq, @workflow, @tier, 'approved', @action_kind, @summary, @action,
        @payload_hash, @policy_version, @rule, @reason, @approvals_required, @roles, sqlc.narg('deadline'), @on_timeout,
        @escalate_to, @batch_key, @started_by, now(), @actor::text
    FROM run
    RETURNING *
), dec AS (
    INSERT INTO decisions (request_id, run_id, actor, verdict, reason, payload_hash, policy_version, rule, tier)
    SELECT req.id, req.run_id, @actor::text, 'approve', req.reason, req.payload_hash, req.policy_version, req.rule, req.tier
    FROM req
), event AS (
    INSERT INTO audit_events (actor, kind, subject_type, subject_id, run_id, details)
    SELECT @actor::text, @event_kind::text, 'request', req.id::text, req.run_id, @event_details::jsonb
    FROM req
), steps AS (
    INSERT INTO workflow_steps (run_id, seq, name, kind, status, output, tokens, attempts, started_at, finished_at, model)
    SELECT req.run_id, s.seq, s.name, s.kind, 'completed',
        CASE WHEN s.seq = req.step_seq
            THEN s.output || jsonb_build_object('request_id', req.id, 'decided_at', req.created_at)
            ELSE s.output END,
        s.tokens, s.attempts, s.started_at, s.finished_at, s.model
    FROM req, jsonb_to_recordset(@steps::jsonb) AS s(seq int, name text, kind text, output jsonb, tokens int,
        attempts int, started_at timestamptz, finished_at timestamptz, model text)
    ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
        status = 'completed', output = EXCLUDED.output, error = NULL, tokens = EXCLUDED.tokens,
        attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, model = EXCLUDED.model
)
SELECT * FROM req;

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

-- name: RequestLatestByRuns :many
-- The latest request of each run named, for the runs list (at most a page of
-- runs; approval_requests_step serves each run's lookup).
SELECT DISTINCT ON (run_id) id, run_id, summary, status
FROM approval_requests WHERE run_id = ANY(@run_ids::uuid[])
ORDER BY run_id, step_seq DESC;

-- name: RequestSummaries :many
-- The summaries of the requests named (a page of history at most).
SELECT id, summary FROM approval_requests WHERE id = ANY(@ids::uuid[]);
