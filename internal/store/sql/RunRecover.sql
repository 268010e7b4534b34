-- RunRecover: hand a run whose execution was lost to a new resume sequence,
-- counting a recovery. The job check is repeated on the snapshot of this
-- statement (see store/lease.go).
UPDATE workflow_runs r SET resume_seq = resume_seq + 1, recoveries = recoveries + 1,
    lease_owner = NULL, lease_until = now() + interval '1 microsecond' * @lease_micros::bigint, updated_at = now()
WHERE id = @id AND resume_seq = @resume_seq AND status IN ('queued', 'running', 'retrying')
    AND (lease_owner IS NULL OR lease_until < now()) AND NOT /* live_job */
RETURNING resume_seq
