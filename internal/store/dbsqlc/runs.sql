-- name: RunInsert :one
INSERT INTO workflow_runs (workflow, version, business_key, input, started_by, trace_parent)
VALUES (@workflow, @version, @business_key, @input, @started_by, NULLIF(@trace_parent::text, ''))
ON CONFLICT (workflow, business_key) DO NOTHING
RETURNING *;

-- name: RunInsertClaimed :one
-- RunInsert of a run born claimed (as RunClaim claims a queued run for its
-- first job) by an execution in the inserting process, with its run.started
-- audit event, in one statement sent on its own: one implicit transaction,
-- one round trip for the four of BEGIN, the insert, the event and COMMIT.
-- That transaction commits without waiting for its WAL flush (TxCommitAsync's
-- set_config, in the same statement): the execution's first commit flushes
-- it. On a conflict nothing is written and no row is returned.
WITH run AS (
    INSERT INTO workflow_runs (workflow, version, business_key, input, started_by, trace_parent,
        status, attempt, lease_owner, lease_until)
    SELECT @workflow, @version, @business_key, @input, @started_by, NULLIF(@trace_parent::text, ''),
        'running', 1, @owner::uuid, now() + interval '1 microsecond' * @lease_micros::bigint
    FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
    ON CONFLICT (workflow, business_key) DO NOTHING
    RETURNING *
), event AS (
    INSERT INTO audit_events (actor, kind, subject_type, subject_id, run_id, details)
    SELECT run.started_by, @event_kind::text, @event_subject_type::text, run.id::text, run.id, @event_details::jsonb
    FROM run
)
SELECT * FROM run;

-- name: RunGetByKey :one
SELECT * FROM workflow_runs WHERE workflow = @workflow AND business_key = @business_key;

-- name: RunGet :one
SELECT * FROM workflow_runs WHERE id = @id;

-- name: RunGetForUpdate :one
SELECT * FROM workflow_runs WHERE id = @id FOR UPDATE;

-- name: RunClaim :one
UPDATE workflow_runs SET status = 'running', attempt = failures + 1, updated_at = now(),
    lease_owner = @owner, lease_until = now() + interval '1 microsecond' * @lease_micros::bigint
WHERE id = @id AND resume_seq = @resume_seq AND status = ANY(@from_statuses::text[])
    AND (status <> 'running' OR lease_owner IS NULL OR lease_until < now())
RETURNING *;

-- name: RunClaimHistory :one
-- RunClaim, returning with the run its recorded steps (StepList's rows as
-- a JSON array, without the output of a step that has none, so that it
-- reads as absent rather than as JSON null): an execution's start is one
-- round trip. Its commit does not wait for its WAL flush (async_commit): a
-- claim records nothing a crash could lose but the claim itself (the run
-- is claimed again), and the execution's first durable record flushes it.
WITH claimed AS (
    UPDATE workflow_runs SET status = 'running', attempt = failures + 1, updated_at = now(),
        lease_owner = @owner, lease_until = now() + interval '1 microsecond' * @lease_micros::bigint
    WHERE id = @id AND resume_seq = @resume_seq AND status = ANY(@from_statuses::text[])
        AND (status <> 'running' OR lease_owner IS NULL OR lease_until < now())
    RETURNING *
)
SELECT sqlc.embed(workflow_runs),
    coalesce((SELECT jsonb_agg(to_jsonb(s) - CASE WHEN s.output IS NULL THEN 'output' ELSE '' END ORDER BY s.seq)
        FROM workflow_steps s WHERE s.run_id = workflow_runs.id), '[]')::jsonb AS steps
FROM claimed AS workflow_runs, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit;

-- name: RunLeaseRenew :execrows
UPDATE workflow_runs SET lease_until = now() + interval '1 microsecond' * @lease_micros::bigint
WHERE id = @id AND lease_owner = @owner AND status = 'running';

-- name: RunLeaseRelease :execrows
-- The lease time stays: should the next job never come (River cancelled or
-- discarded it), the sweeper finds the run when it lapses.
UPDATE workflow_runs SET lease_owner = NULL
WHERE id = @id AND lease_owner = @owner;

-- name: RunSetStatus :execrows
UPDATE workflow_runs SET status = @status::text, updated_at = now(),
    finished_at = CASE WHEN @status::text IN ('failed', 'completed', 'rejected', 'cancelled') THEN now() END
WHERE id = @id AND status = ANY(@from_statuses::text[]);

-- name: RunComplete :one
-- The run's last pure steps, held in memory until now, are stored in the
-- same statement (none: an empty array): a run's completion is one round
-- trip. Its commit does not wait for its WAL flush (async_commit): the output
-- is a function of the recorded history, so a database crash that loses the
-- completion (within wal_writer_delay of it) loses only pure work, which the
-- sweeper has the run do again, as a crash before a pure step's record does.
WITH run AS (
UPDATE workflow_runs SET status = 'completed', output = @output, error_code = NULL, error_message = NULL,
    updated_at = now(), finished_at = now(), lease_owner = NULL, lease_until = NULL,
    current_step = coalesce(sqlc.narg('current_step')::text, current_step),
    steps_used = GREATEST(workflow_runs.steps_used, @steps_used::int)
WHERE id = @id AND status = ANY(@from_statuses::text[]) AND lease_owner = @owner
RETURNING id
), steps AS (
    INSERT INTO workflow_steps (run_id, seq, name, kind, status, output, tokens, attempts, started_at, finished_at)
    SELECT run.id, s.seq, s.name, s.kind, 'completed', s.output, s.tokens, s.attempts, s.started_at, s.finished_at
    FROM run, jsonb_to_recordset(@steps::jsonb) AS s(seq int, name text, kind text, output jsonb, tokens int,
        attempts int, started_at timestamptz, finished_at timestamptz)
    ON CONFLICT (run_id, seq) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
        status = 'completed', output = EXCLUDED.output, error = NULL, tokens = EXCLUDED.tokens,
        attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at, finished_at = EXCLUDED.finished_at
)
SELECT count(*) FROM run, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit;

-- name: RunFail :execrows
-- With status 'failed' the run ends; with 'retrying' it counts a failure and
-- the sweeper looks again after the recheck interval.
UPDATE workflow_runs SET status = @status::text, error_code = @error_code::text,
    error_message = @error_message::text, updated_at = now(),
    finished_at = CASE WHEN @status::text = 'failed' THEN now() END,
    failures = failures + CASE WHEN @status::text = 'retrying' THEN 1 ELSE 0 END,
    lease_owner = NULL,
    lease_until = CASE WHEN @status::text = 'retrying' THEN now() + interval '1 microsecond' * @recheck_micros::bigint END
WHERE id = @id AND status = ANY(@from_statuses::text[]) AND lease_owner = @owner;

-- name: RunSuspend :execrows
-- The lease time goes: once resumed, the run is looked at a lease after its
-- resume (updated_at), not at once for a lease that lapsed while it waited.
UPDATE workflow_runs SET status = 'waiting_human', current_step = @current_step, updated_at = now(), lease_until = NULL
WHERE id = @id AND status = ANY(@from_statuses::text[]);

-- name: RunResume :one
UPDATE workflow_runs SET status = 'queued', resume_seq = resume_seq + 1, updated_at = now()
WHERE id = @id AND status = ANY(@from_statuses::text[])
RETURNING resume_seq;

-- name: RunList :many
-- Each filter applies only when given: an empty text or a NULL matches all.
SELECT * FROM workflow_runs
WHERE (@status::text = '' OR status = @status::text)
    AND (@workflow::text = '' OR workflow = @workflow::text)
    AND (@key_prefix_pattern::text = '' OR business_key LIKE @key_prefix_pattern::text || '%')
    -- Runs under way are listed by status through workflow_runs_open, whose
    -- predicate this states (ended runs: workflow_runs_status).
    AND (@status::text = '' OR @status::text = ANY(@final_statuses::text[]) OR finished_at IS NULL)
    -- Without a cursor the keyset starts past every row; written without OR
    -- so that a generic plan still seeks the index to the cursor.
    AND (created_at, id) < (coalesce(sqlc.narg('after_time')::timestamptz, 'infinity'::timestamptz),
        coalesce(sqlc.narg('after_id')::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
ORDER BY created_at DESC, id DESC
LIMIT @row_limit;

-- name: RunRecheck :exec
-- A lapsed owner is dropped (the job that can still execute will claim the
-- run) and the sweeper looks again after the given time.
UPDATE workflow_runs SET lease_owner = NULL, lease_until = now() + interval '1 microsecond' * @after_micros::bigint
WHERE id = @id AND resume_seq = @resume_seq AND (lease_owner IS NULL OR lease_until < now());

-- name: RunLockHeld :one
-- Locks a running run that the execution owner still holds: a durable wait
-- decides between consuming an event and parking under this lock, which an
-- event's delivery also takes, so that no event slips between the two.
SELECT id FROM workflow_runs WHERE id = @id AND status = 'running' AND lease_owner = @owner FOR UPDATE;

-- name: RunPark :one
-- Parks a run at a durable wait under a new resume sequence, which the wake
-- job carries: an older job, or this one run twice, then claims nothing. The
-- owner stays until the parking transaction releases it with the job.
UPDATE workflow_runs SET status = @status::text, current_step = @current_step, resume_seq = resume_seq + 1,
    updated_at = now(), lease_until = NULL
WHERE id = @id AND status = ANY(@from_statuses::text[]) AND lease_owner = @owner
RETURNING resume_seq;

-- name: RunWake :one
-- Queues a parked run under a new resume sequence, only if it is still parked
-- at the sequence the caller saw.
UPDATE workflow_runs SET status = 'queued', resume_seq = resume_seq + 1, updated_at = now(), lease_until = NULL
WHERE id = @id AND resume_seq = @resume_seq AND status = ANY(@from_statuses::text[])
RETURNING resume_seq;

-- name: RunRetryLater :one
-- A failed step waits for its retry holding no worker: the run is retrying
-- under a new resume sequence, whose job is scheduled at the backoff time;
-- the sweeper looks at retry_until (a lease after it), should the job be lost.
UPDATE workflow_runs SET status = 'retrying', error_code = @error_code::text, error_message = @error_message::text,
    failures = failures + 1, resume_seq = resume_seq + 1, updated_at = now(), lease_owner = NULL,
    lease_until = @retry_until::timestamptz
WHERE id = @id AND status = ANY(@from_statuses::text[]) AND lease_owner = @owner
RETURNING resume_seq;

-- name: RunCompensateStart :one
-- The run leaves its workflow function for its undos: queued under a new
-- resume sequence (fencing off any execution of the function), with the
-- cause. An owner, when given, must still hold the run. The run has not
-- finished until its undos are done (RunCompensateEnd).
UPDATE workflow_runs SET status = 'queued', compensation_cause = @cause::text, finished_at = NULL,
    error_code = coalesce(sqlc.narg('error_code')::text, error_code),
    error_message = coalesce(sqlc.narg('error_message')::text, error_message),
    resume_seq = resume_seq + 1, updated_at = now(), lease_owner = NULL, lease_until = NULL
WHERE id = @id AND status = ANY(@from_statuses::text[]) AND compensation_cause IS NULL
    AND (@owner::text = '' OR lease_owner::text = @owner::text)
RETURNING resume_seq;

-- name: RunCompensateEnd :execrows
UPDATE workflow_runs SET status = @status::text, updated_at = now(), finished_at = now(),
    error_message = coalesce(sqlc.narg('error_message')::text, error_message),
    lease_owner = NULL, lease_until = NULL
WHERE id = @id AND status = 'running' AND lease_owner = @owner AND compensation_cause IS NOT NULL;

-- name: RunRevisions :many
-- The runs of a workflow that a run revises, following its input's
-- "revises" (the approvals API's revisions) back, nearest first, at most
-- max_depth of them.
WITH RECURSIVE chain(id, depth) AS (
    SELECT (r.input->>'revises')::uuid, 1 FROM workflow_runs r
    WHERE r.id = @id AND coalesce(r.input->>'revises', '') <> ''
    UNION ALL
    SELECT (p.input->>'revises')::uuid, c.depth + 1
    FROM chain c JOIN workflow_runs p ON p.id = c.id
    WHERE coalesce(p.input->>'revises', '') <> '' AND c.depth < @max_depth::int
)
SELECT r.* FROM chain c JOIN workflow_runs r ON r.id = c.id
WHERE r.workflow = @workflow
ORDER BY c.depth;

-- name: RunVersionCounts :many
-- Runs of each workflow version that have not ended, split into those
-- waiting (for a human or anything else outside) and those under way, for
-- `countersign workflow list`: a version is removed only when unused.
SELECT workflow, version,
    count(*) FILTER (WHERE status LIKE 'waiting%')::int AS waiting,
    count(*) FILTER (WHERE status NOT LIKE 'waiting%')::int AS running
FROM workflow_runs
WHERE status <> ALL(@final_statuses::text[])
GROUP BY workflow, version
ORDER BY workflow, version;
