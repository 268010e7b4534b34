-- name: MetricSeries :many
-- One metric's rows in [since, until) folded into buckets of step_seconds
-- from origin, grouped by one dimension: the dashboard's counts and sums.
-- Whole days in [day_since, day_until) come from metric_days, the hours
-- before and after them from metric_hours (day_since = day_until = until
-- reads hours only). Each branch is a range of a primary key (metric, day or
-- hour, ...): the cost is (days + edge hours) times the metric's keys,
-- never the runs.
WITH r AS (
    SELECT d.day AS at, d.workflow, d.rule, d.tier, d.label, d.count, d.sum FROM metric_days d
    WHERE d.metric = @metric AND d.day >= @day_since AND d.day < @day_until
        AND (@workflow::text = '' OR d.workflow = @workflow) AND (@rule::text = '' OR d.rule = @rule)
        AND (@label::text = '' OR d.label = @label)
    UNION ALL
    SELECT h.hour, h.workflow, h.rule, h.tier, h.label, h.count, h.sum FROM metric_hours h
    WHERE h.metric = @metric AND h.hour >= @since AND h.hour < @day_since
        AND (@workflow::text = '' OR h.workflow = @workflow) AND (@rule::text = '' OR h.rule = @rule)
        AND (@label::text = '' OR h.label = @label)
    UNION ALL
    SELECT h.hour, h.workflow, h.rule, h.tier, h.label, h.count, h.sum FROM metric_hours h
    WHERE h.metric = @metric AND h.hour >= @day_until AND h.hour < @until
        AND (@workflow::text = '' OR h.workflow = @workflow) AND (@rule::text = '' OR h.rule = @rule)
        AND (@label::text = '' OR h.label = @label)
)
SELECT date_bin(interval '1 second' * sqlc.arg(step_seconds)::float8, r.at, sqlc.arg(origin)::timestamptz)::timestamptz AS bucket,
    (CASE sqlc.arg(by_dim)::text WHEN 'workflow' THEN r.workflow WHEN 'rule' THEN r.rule WHEN 'tier' THEN r.tier ELSE r.label END)::text AS grp,
    sum(r.count)::bigint AS count, sum(r.sum)::float8 AS total
FROM r
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: MetricHistogramSeries :many
-- The same rows for a metric with a histogram, not summed: the store adds
-- their bucket arrays element-wise in Go (store.MetricHistogramSeries).
-- Unnesting them here cost a row per histogram bucket (18 per key and
-- hour: 3 million a month for the decision times alone).
WITH r AS (
    SELECT d.day AS at, d.workflow, d.rule, d.tier, d.label, d.buckets FROM metric_days d
    WHERE d.metric = @metric AND d.day >= @day_since AND d.day < @day_until
        AND (@workflow::text = '' OR d.workflow = @workflow) AND (@rule::text = '' OR d.rule = @rule)
        AND (@label::text = '' OR d.label = @label)
    UNION ALL
    SELECT h.hour, h.workflow, h.rule, h.tier, h.label, h.buckets FROM metric_hours h
    WHERE h.metric = @metric AND h.hour >= @since AND h.hour < @day_since
        AND (@workflow::text = '' OR h.workflow = @workflow) AND (@rule::text = '' OR h.rule = @rule)
        AND (@label::text = '' OR h.label = @label)
    UNION ALL
    SELECT h.hour, h.workflow, h.rule, h.tier, h.label, h.buckets FROM metric_hours h
    WHERE h.metric = @metric AND h.hour >= @day_until AND h.hour < @until
        AND (@workflow::text = '' OR h.workflow = @workflow) AND (@rule::text = '' OR h.rule = @rule)
        AND (@label::text = '' OR h.label = @label)
)
SELECT date_bin(interval '1 second' * sqlc.arg(step_seconds)::float8, r.at, sqlc.arg(origin)::timestamptz)::timestamptz AS bucket,
    (CASE sqlc.arg(by_dim)::text WHEN 'workflow' THEN r.workflow WHEN 'rule' THEN r.rule WHEN 'tier' THEN r.tier ELSE r.label END)::text AS grp,
    r.buckets
FROM r
WHERE cardinality(r.buckets) > 0
ORDER BY 1, 2;

-- name: MetricWorkflows :many
-- The workflows that have any metric: the dashboard's filter menu (a scan of
-- metric_totals, whose size is the number of label combinations).
SELECT DISTINCT workflow FROM metric_totals WHERE workflow <> '' ORDER BY workflow;

-- name: MetricRules :many
SELECT DISTINCT rule FROM metric_totals WHERE rule <> '' ORDER BY rule;
