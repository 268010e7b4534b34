-- RunClaimNext: an execution that finished its run takes the next ready run
-- whose River job no worker has fetched: the job is deleted and the run
-- claimed (as RunClaimHistory claims it, returning its steps) in one
-- statement, so that River does not fetch, mark running and complete a job
-- for it. The job is the oldest available one of the kind in the queue, in
-- River's own fetch order, skipping jobs that River's fetch has locked.
--
-- A job whose run cannot be claimed (ended, resumed by a later job, held by a
-- live execution) is deleted all the same, and no row returned: that job
-- would have claimed nothing (a live execution's run, should the execution
-- die, is the sweeper's, as below). A
-- run claimed here that loses its execution has no job, as a run started
-- inline has none: its lease lapses and the sweeper hands it to a new one.
-- Its commit does not wait for its WAL flush, as RunClaimHistory's does not:
-- a crash that loses it brings back the job and the run as they were.
WITH job AS (
    DELETE FROM river_job WHERE id = (
        SELECT id FROM river_job
        WHERE state = 'available' AND queue = @queue AND scheduled_at <= now() AND kind = @kind
        ORDER BY priority, scheduled_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED)
    RETURNING (args->>'run_id')::uuid AS run_id, (args->>'seq')::int AS seq
), claimed AS (
    UPDATE workflow_runs r SET status = 'running', attempt = failures + 1, updated_at = now(),
        lease_owner = @owner, lease_until = now() + interval '1 microsecond' * @lease_micros::bigint
    FROM job
    WHERE r.id = job.run_id AND r.resume_seq = job.seq AND r.status = ANY(@from_statuses::text[])
        AND (r.status <> 'running' OR r.lease_owner IS NULL OR r.lease_until < now())
    RETURNING r.*
)
SELECT claimed.*,
    coalesce((SELECT jsonb_agg(to_jsonb(s) - CASE WHEN s.output IS NULL THEN 'output' ELSE '' END ORDER BY s.seq)
        FROM workflow_steps s WHERE s.run_id = claimed.id), '[]')::jsonb AS steps
FROM claimed, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
