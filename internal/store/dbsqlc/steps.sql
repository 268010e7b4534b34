-- name: StepList :many
SELECT * FROM workflow_steps WHERE run_id = @run_id ORDER BY seq;

-- name: StepComplete :execrows
-- One statement stores one or more completed steps (a durable step with the
-- pure steps before it that were held in memory) and advances the run's
-- counters once, so that they cost one round trip and one commit; nothing is
-- stored unless the owner still holds the running run. It sets no indexed
-- column of the run (not updated_at, which keys workflow_runs_lease_unset and
-- means the last change of the run's state or lease), so that the update is
-- HOT (migration 32): no new entry in any of the run's indexes per step.
WITH run AS (
    UPDATE workflow_runs
    SET current_step = @current_step::text, steps_used = GREATEST(workflow_runs.steps_used, @steps_used::int),
        tokens_used = tokens_used + @tokens_total::int, model_calls = model_calls + @model_calls::int
    WHERE id = @run_id AND status = 'running' AND lease_owner = @owner
    RETURNING id
)
INSERT INTO workflow_steps (run_id, seq, name, kind, status, output, tokens, attempts, started_at, finished_at, model)
SELECT run.id, s.seq, s.name, s.kind, 'completed', s.output, s.tokens, s.attempts, s.started_at, s.finished_at, s.model
FROM run, jsonb_to_recordset(@steps::jsonb) AS s(seq int, name text, kind text, output jsonb, tokens int,
    attempts int, started_at timestamptz, finished_at timestamptz, model text)
ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
    status = 'completed', output = EXCLUDED.output, error = NULL, tokens = EXCLUDED.tokens,
    attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at, model = EXCLUDED.model;

-- name: StepFail :exec
WITH run AS (
    UPDATE workflow_runs SET tokens_used = tokens_used + @tokens::int, model_calls = model_calls + @model_calls::int
    WHERE id = @run_id AND lease_owner = @owner RETURNING id
)
INSERT INTO workflow_steps (run_id, seq, name, kind, status, error, tokens, attempts, started_at, finished_at, model)
SELECT run.id, @seq::int, @name::text, @kind::text, 'failed', @error::text, @tokens::int, @attempts::int, @started_at::timestamptz, now(), sqlc.narg('model')::text FROM run
ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
    status = 'failed', error = EXCLUDED.error, tokens = workflow_steps.tokens + EXCLUDED.tokens,
    attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, finished_at = now(),
    model = coalesce(EXCLUDED.model, workflow_steps.model);

-- name: StepWait :exec
INSERT INTO workflow_steps (run_id, seq, name, kind, status, output, attempts, started_at)
VALUES (@run_id, @seq, @name, 'approval', 'waiting', @output, @attempts, @started_at)
ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
    status = 'waiting', output = EXCLUDED.output, error = NULL, attempts = EXCLUDED.attempts,
    started_at = EXCLUDED.started_at, finished_at = NULL;

-- name: StepResolve :exec
UPDATE workflow_steps SET status = 'completed', output = @output, finished_at = now()
WHERE run_id = @run_id AND seq = @seq;

-- name: OutboxInsert :one
INSERT INTO demo_outbox (idempotency_key, run_id, kind, payload)
VALUES (@idempotency_key, @run_id, @kind, @payload) RETURNING id;

-- name: OutboxDuplicates :one
SELECT count(*) FROM (SELECT idempotency_key FROM demo_outbox
    GROUP BY idempotency_key HAVING count(*) > 1) d;

-- name: StepPark :exec
-- A durable wait (a sleep, an event) parked at this step until wake_at (NULL:
-- an event awaited without a timeout).
INSERT INTO workflow_steps (run_id, seq, name, kind, status, output, attempts, started_at, wake_at)
VALUES (@run_id, @seq, @name, @kind, 'waiting', @output, @attempts, @started_at, sqlc.narg('wake_at'))
ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
    status = 'waiting', output = EXCLUDED.output, error = NULL, attempts = EXCLUDED.attempts,
    started_at = EXCLUDED.started_at, finished_at = NULL, wake_at = EXCLUDED.wake_at;

-- name: StepAttemptInsert :exec
INSERT INTO workflow_step_attempts (run_id, seq, attempt, name, error, started_at, retry_at)
VALUES (@run_id, @seq, @attempt, @name, @error, @started_at, sqlc.narg('retry_at'))
ON CONFLICT (run_id, seq, attempt) DO UPDATE SET error = EXCLUDED.error, finished_at = now(),
    retry_at = coalesce(EXCLUDED.retry_at, workflow_step_attempts.retry_at);

-- name: StepAttemptSetRetry :exec
UPDATE workflow_step_attempts SET retry_at = @retry_at WHERE run_id = @run_id AND seq = @seq AND attempt = @attempt;

-- name: StepAttemptList :many
SELECT * FROM workflow_step_attempts WHERE run_id = @run_id ORDER BY seq, attempt;

-- name: StepCompensate :execrows
-- An undo's record, only while its execution holds the compensating run.
WITH run AS (
    UPDATE workflow_runs SET current_step = @name::text
    WHERE id = @run_id AND status = 'running' AND lease_owner = @owner AND compensation_cause IS NOT NULL
    RETURNING id
)
INSERT INTO workflow_steps (run_id, seq, name, kind, status, output, attempts, started_at, finished_at)
SELECT run.id, @seq::int, @name::text, 'compensation', 'completed', @output, @attempts::int, @started_at::timestamptz, now() FROM run
ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
    status = 'completed', output = EXCLUDED.output, error = NULL,
    attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, finished_at = now();
