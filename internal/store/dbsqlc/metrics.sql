-- name: MetricAdd :exec
-- Adds the facts of one key to its hour, its day and its total, in one
-- statement: a day is always the sum of its hours (migration 35).
WITH by_hour AS (
    INSERT INTO metric_hours (hour, metric, workflow, rule, tier, label, count, sum, buckets)
    VALUES (@bucket_hour::timestamptz, @metric, @workflow, @rule, @tier, @label, @count, @sum, @buckets::bigint[])
    ON CONFLICT (metric, hour, workflow, rule, tier, label) DO UPDATE SET
        count = metric_hours.count + EXCLUDED.count, sum = metric_hours.sum + EXCLUDED.sum,
        buckets = metric_buckets_add(metric_hours.buckets, EXCLUDED.buckets)
), by_day AS (
    INSERT INTO metric_days (day, metric, workflow, rule, tier, label, count, sum, buckets)
    VALUES (@bucket_day::timestamptz, @metric, @workflow, @rule, @tier, @label, @count, @sum, @buckets::bigint[])
    ON CONFLICT (metric, day, workflow, rule, tier, label) DO UPDATE SET
        count = metric_days.count + EXCLUDED.count, sum = metric_days.sum + EXCLUDED.sum,
        buckets = metric_buckets_add(metric_days.buckets, EXCLUDED.buckets)
)
INSERT INTO metric_totals (metric, workflow, rule, tier, label, count, sum, buckets)
VALUES (@metric, @workflow, @rule, @tier, @label, @count, @sum, @buckets::bigint[])
ON CONFLICT (metric, workflow, rule, tier, label) DO UPDATE SET
    count = metric_totals.count + EXCLUDED.count, sum = metric_totals.sum + EXCLUDED.sum,
    buckets = metric_buckets_add(metric_totals.buckets, EXCLUDED.buckets);

-- name: MetricTotals :many
SELECT metric, workflow, rule, tier, label, count, sum, buckets FROM metric_totals ORDER BY metric, workflow, rule, tier, label;

-- name: MetricHours :many
-- The hourly rows of the given metrics in [since, until), optionally of one
-- workflow: the series of the dashboard.
SELECT hour, metric, workflow, rule, tier, label, count, sum, buckets FROM metric_hours
WHERE metric = ANY(@metrics::text[]) AND hour >= @since AND hour < @until
    AND (@workflow::text = '' OR workflow = @workflow)
ORDER BY metric, hour, workflow, rule, tier, label;

-- name: MetricHoursPrune :execrows
-- By metric (every metric with rows has a total), so that the primary key
-- (metric, hour, ...) serves it: migration 35 dropped the index on the hour
-- alone, which the planner preferred for the dashboard's ranges although it
-- read every metric's rows of those hours.
DELETE FROM metric_hours WHERE metric IN (SELECT DISTINCT t.metric FROM metric_totals t) AND hour < @before;

-- name: MetricDaysPrune :execrows
-- The days that end at or before the bound: a day whose first hours are
-- pruned stays whole until all of them are.
DELETE FROM metric_days WHERE metric IN (SELECT DISTINCT t.metric FROM metric_totals t)
    AND day <= sqlc.arg(before)::timestamptz - interval '1 day';

-- name: MetricRollLock :one
-- One roller at a time across processes; the others skip their turn.
SELECT pg_try_advisory_xact_lock(7243101);

-- name: MetricCursorGet :one
SELECT position FROM metric_cursors WHERE name = @name FOR UPDATE;

-- name: MetricCursorSet :exec
UPDATE metric_cursors SET position = @position, updated_at = now() WHERE name = @name;

-- name: MetricAuditAfter :many
-- Chained events after the cursor, in chain order, of the kinds the metrics count.
SELECT c.seq, e.at, e.actor, e.kind, e.run_id, e.details FROM audit_chain c JOIN audit_events e ON e.id = c.event_id
WHERE c.seq > sqlc.arg(after)::bigint AND c.seq <= sqlc.arg(after)::bigint + sqlc.arg(row_limit)::bigint AND e.kind = ANY(@kinds::text[])
ORDER BY c.seq;

-- name: MetricAuditLast :one
-- The last chained seq at or below a bound (the cursor moves past the kinds it skips).
SELECT coalesce(max(seq), 0)::bigint FROM audit_chain WHERE seq > sqlc.arg(after)::bigint AND seq <= sqlc.arg(after)::bigint + sqlc.arg(row_limit)::bigint;

-- name: MetricRunQueueTake :many
-- Finished runs to fold, taken out of the queue in the folding transaction.
DELETE FROM metric_run_queue WHERE run_id IN (
    SELECT q.run_id FROM metric_run_queue q ORDER BY q.at LIMIT @row_limit FOR UPDATE SKIP LOCKED)
RETURNING run_id;

-- name: MetricRunsFinished :many
SELECT id, workflow, status, created_at, finished_at, updated_at FROM workflow_runs WHERE id = ANY(@ids::uuid[]);

-- name: MetricRunSteps :many
SELECT s.run_id, s.seq, s.kind, s.status, s.attempts, s.tokens, s.model, s.started_at, s.finished_at
FROM workflow_steps s WHERE s.run_id = ANY(@ids::uuid[]);

-- name: MetricRunAttempts :many
SELECT a.run_id, a.seq, a.attempt, a.error, a.started_at, a.finished_at
FROM workflow_step_attempts a WHERE a.run_id = ANY(@ids::uuid[]);

-- name: MetricWaiting :many
-- Waiting requests of each tier, counted up to a cap, and the age of the
-- oldest (0 when none): the partial index approval_requests_waiting, read without the
-- table, at most cap entries and one more per tier.
SELECT t.tier::text AS tier,
    (SELECT count(*) FROM (SELECT 1 FROM approval_requests r
        WHERE r.status = 'pending' AND r.tier = t.tier LIMIT sqlc.arg(cap)::bigint) c)::bigint AS waiting,
    coalesce(extract(epoch FROM now() - (SELECT min(r.created_at) FROM approval_requests r
        WHERE r.status = 'pending' AND r.tier = t.tier)), 0)::float8 AS oldest_seconds
FROM unnest(sqlc.arg(tiers)::text[]) AS t(tier);

-- name: MetricBacklog :one
-- What the roller has still to fold: finished runs queued, and chained
-- audit events past its cursor (with the time of the oldest).
SELECT (SELECT count(*) FROM metric_run_queue)::bigint AS runs_queued,
    coalesce(extract(epoch FROM now() - (SELECT min(at) FROM metric_run_queue)), 0)::float8 AS runs_lag_seconds,
    ((SELECT coalesce(max(seq), 0) FROM audit_chain) - (SELECT position FROM metric_cursors WHERE name = 'audit'))::bigint AS audit_behind;
