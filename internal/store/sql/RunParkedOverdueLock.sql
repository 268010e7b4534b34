-- RunParkedOverdueLock: runs parked at a durable wait (a sleep, an event
-- with a timeout) whose wake-up time passed more than a grace ago and whose
-- wake job can no longer execute (River discarded, cancelled or lost it),
-- locked, skipping rows another sweeper holds. Hand-written: it reads
-- river_job (see RunOrphansLock.sql).
SELECT r.id, r.status, r.resume_seq, s.name AS step
FROM workflow_runs r
JOIN workflow_steps s ON s.run_id = r.id AND s.status = 'waiting' AND s.kind IN ('sleep', 'event')
WHERE r.status IN ('sleeping', 'waiting_event')
    AND s.wake_at < now() - interval '1 microsecond' * @grace_micros::bigint
    AND NOT /* live_job */
LIMIT @row_limit
FOR UPDATE OF r SKIP LOCKED
