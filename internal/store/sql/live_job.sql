-- Whether a job for run r at its resume sequence can still execute: queued,
-- waiting for its time or retry, or fetched within the lease. Shared by the
-- sweeper queries where they say live_job.
EXISTS (SELECT 1 FROM river_job j
    WHERE j.kind = 'workflow_run' AND j.args @> jsonb_build_object('run_id', r.id::text, 'seq', r.resume_seq)
        AND (j.state IN ('available', 'scheduled', 'retryable', 'pending')
            OR (j.state = 'running' AND j.attempted_at >= now() - interval '1 microsecond' * @lease_micros::bigint)))
