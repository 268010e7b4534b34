-- Whether a job for run r at its resume sequence can still execute: queued,
-- waiting for its time or retry, or fetched within the lease. Shared by the
-- sweeper queries where they say live_job. The two arguments are compared
-- as text, as the index river_job_workflow_run (migration 37) holds them.
EXISTS (SELECT 1 FROM river_job j
    WHERE j.kind = 'workflow_run' AND j.args->>'run_id' = r.id::text AND j.args->>'seq' = r.resume_seq::text
        AND (j.state IN ('available', 'scheduled', 'retryable', 'pending')
            OR (j.state = 'running' AND j.attempted_at >= now() - interval '1 microsecond' * @lease_micros::bigint)))
