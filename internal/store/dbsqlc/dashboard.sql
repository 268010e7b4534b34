-- name: MetricSeries :many
-- One metric's hourly rows folded into buckets of step_seconds from origin,
-- grouped by one dimension: the dashboard's counts and sums. Reads the
-- primary key of metric_hours (metric, hour, ...) as a range: its cost is
-- the hours in the window times the metric's keys, never the runs.
SELECT date_bin(interval '1 second' * sqlc.arg(step_seconds)::float8, hour, sqlc.arg(origin)::timestamptz)::timestamptz AS bucket,
    (CASE sqlc.arg(by_dim)::text WHEN 'workflow' THEN workflow WHEN 'rule' THEN rule WHEN 'tier' THEN tier ELSE label END)::text AS grp,
    sum(count)::bigint AS count, sum(sum)::float8 AS total
FROM metric_hours
WHERE metric = @metric AND hour >= @since AND hour < @until
    AND (@workflow::text = '' OR workflow = @workflow) AND (@rule::text = '' OR rule = @rule)
    AND (@label::text = '' OR label = @label)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: MetricHistogramSeries :many
-- The same for a metric with a histogram: its non-cumulative bucket counts
-- summed per time bucket and group, one row per histogram bucket (ord from 1).
SELECT date_bin(interval '1 second' * sqlc.arg(step_seconds)::float8, h.hour, sqlc.arg(origin)::timestamptz)::timestamptz AS bucket,
    (CASE sqlc.arg(by_dim)::text WHEN 'workflow' THEN h.workflow WHEN 'rule' THEN h.rule WHEN 'tier' THEN h.tier ELSE h.label END)::text AS grp,
    u.ord::int AS ord, sum(u.n)::bigint AS n
FROM metric_hours h, unnest(h.buckets) WITH ORDINALITY AS u(n, ord)
WHERE h.metric = @metric AND h.hour >= @since AND h.hour < @until
    AND (@workflow::text = '' OR h.workflow = @workflow) AND (@rule::text = '' OR h.rule = @rule)
    AND (@label::text = '' OR h.label = @label)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3;

-- name: MetricWorkflows :many
-- The workflows that have any metric: the dashboard's filter menu (a scan of
-- metric_totals, whose size is the number of label combinations).
SELECT DISTINCT workflow FROM metric_totals WHERE workflow <> '' ORDER BY workflow;

-- name: MetricRules :many
SELECT DISTINCT rule FROM metric_totals WHERE rule <> '' ORDER BY rule;
