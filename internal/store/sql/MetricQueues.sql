-- Jobs ready to run and not yet picked up, per River queue, with the time the
-- oldest became due: queue latency. River's fetching index (state, queue,
-- priority, scheduled_at, id) holds them, so this reads the backlog only,
-- never finished jobs. Hand-written: sqlc does not see River's tables.
SELECT queue, count(*)::bigint AS available, min(scheduled_at) AS oldest
FROM river_job WHERE state = 'available'
GROUP BY queue ORDER BY queue
