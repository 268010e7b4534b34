-- RunOrphansLock: runs under way that no execution holds (lease lapsed; no
-- lease time and not updated for a lease, as a new or resumed run whose job
-- was cancelled before any execution claimed it; or a job fetched longer than
-- the lease ago without claiming its run), locked, skipping rows another
-- sweeper holds.
--
-- This and the other sweeper queries read river_job, which River migrates
-- and the goose migrations do not define, so sqlc cannot check them: they
-- are run by hand (store/lease.go) and scanned by name.
WITH candidates AS (
    (SELECT id FROM workflow_runs
     WHERE status IN ('queued', 'running', 'retrying') AND lease_until < now()
     ORDER BY lease_until LIMIT @row_limit)
    UNION
    (SELECT id FROM workflow_runs
     WHERE status IN ('queued', 'running', 'retrying') AND lease_until IS NULL
        AND updated_at < now() - interval '1 microsecond' * @lease_micros::bigint
     ORDER BY updated_at LIMIT @row_limit)
    UNION
    (SELECT r.id FROM river_job j
     JOIN workflow_runs r ON r.id = (j.args->>'run_id')::uuid AND r.resume_seq = (j.args->>'seq')::int
     WHERE j.state = 'running' AND j.kind = 'workflow_run'
        AND j.attempted_at < now() - interval '1 microsecond' * @lease_micros::bigint
        AND r.status IN ('queued', 'running', 'retrying')
     LIMIT @row_limit)
)
SELECT r.id, r.status, r.resume_seq, r.recoveries, r.lease_owner IS NOT NULL AS had_owner,
    coalesce((SELECT j.state::text FROM river_job j
        WHERE j.kind = 'workflow_run' AND j.args->>'run_id' = r.id::text AND j.args->>'seq' = r.resume_seq::text
        ORDER BY j.id DESC LIMIT 1), '') AS job_state,
    /* live_job */ AS live_job
FROM workflow_runs r JOIN candidates c ON c.id = r.id
WHERE r.status IN ('queued', 'running', 'retrying') AND (r.lease_owner IS NULL OR r.lease_until < now())
LIMIT @row_limit
FOR UPDATE OF r SKIP LOCKED
