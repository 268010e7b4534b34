-- Per River queue (those River lists and those named), the jobs ready to
-- run and not yet picked up, counted up to a cap, and when the oldest became
-- due (its age, 0 when none): queue latency. River's fetching index (state, queue, priority,
-- scheduled_at, id) answers both: the count reads at most cap entries, the
-- oldest one entry per priority (River's 1 to 4). Hand-written: sqlc does
-- not see River's tables.
SELECT q.name AS queue,
    (SELECT count(*) FROM (SELECT 1 FROM river_job j
        WHERE j.state = 'available' AND j.queue = q.name LIMIT @cap) c)::bigint AS available,
    coalesce(extract(epoch FROM now() - (SELECT min(o.at) FROM (SELECT (SELECT j.scheduled_at FROM river_job j
        WHERE j.state = 'available' AND j.queue = q.name AND j.priority = p
        ORDER BY j.scheduled_at LIMIT 1) AS at FROM generate_series(1, 4) p) o)), 0)::float8 AS oldest_seconds
FROM (SELECT name FROM river_queue UNION SELECT unnest(@queues::text[])) q
ORDER BY q.name
