-- RunFailOrphan: end an orphaned run as failed, unless it moved on.
UPDATE workflow_runs r SET status = 'failed', error_code = @error_code, error_message = @error_message,
    updated_at = now(), finished_at = now(), lease_owner = NULL, lease_until = NULL
WHERE id = @id AND resume_seq = @resume_seq AND status = ANY(@from_statuses::text[])
    AND (lease_owner IS NULL OR lease_until < now()) AND NOT /* live_job */
