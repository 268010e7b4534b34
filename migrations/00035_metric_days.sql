-- +goose Up
-- Daily rollups beside the hourly ones (issue 15, the dashboard's second
-- pass; docs/ARCHITECTURE.md "Metrics"). The dashboard's week and month
-- read a key's days (30 rows a month) and only the current day's hours,
-- instead of 720 hourly rows per key whose histograms it had to unnest.
--
-- metric_days has metric_hours' columns with day (UTC midnight) for hour.
-- The roller adds to it in the same statement as to metric_hours and
-- metric_totals (store.MetricAdd), in the transaction that moves its
-- cursors, so a day is always the sum of its hours: a pass that dies adds
-- to none of the three, a pass that commits to all of them.
CREATE TABLE metric_days (
    day      timestamptz NOT NULL,
    metric   text NOT NULL,
    workflow text NOT NULL DEFAULT '',
    rule     text NOT NULL DEFAULT '',
    tier     text NOT NULL DEFAULT '',
    label    text NOT NULL DEFAULT '',
    count    bigint NOT NULL DEFAULT 0,
    sum      double precision NOT NULL DEFAULT 0,
    buckets  bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (metric, day, workflow, rule, tier, label)
);

-- The dashboard reads one metric over a range of hours or days: the primary
-- keys (metric, hour or day, ...) are that range. The index on the hour
-- alone (migration 24) made the planner read every metric's rows of those
-- hours and filter them (557 buffers for one day's series at the benchmark's
-- 970 keys, against 159 by the primary key); the prune goes by metric too
-- (store.MetricHoursPrune), so it goes.
DROP INDEX metric_hours_hour;

-- The days of the hours rolled before this migration. A one-off: it unnests
-- every hourly histogram once (the dashboard never does again).
INSERT INTO metric_days (day, metric, workflow, rule, tier, label, count, sum, buckets)
WITH totals AS (
    SELECT date_bin('1 day', hour, timestamptz '2000-01-01 00:00:00+00') AS day, metric, workflow, rule, tier, label,
        sum(count)::bigint AS count, sum(sum) AS sum
    FROM metric_hours GROUP BY 1, 2, 3, 4, 5, 6
), elements AS (
    SELECT date_bin('1 day', h.hour, timestamptz '2000-01-01 00:00:00+00') AS day, h.metric, h.workflow, h.rule, h.tier,
        h.label, u.ord, sum(u.n)::bigint AS n
    FROM metric_hours h, unnest(h.buckets) WITH ORDINALITY AS u(n, ord)
    GROUP BY 1, 2, 3, 4, 5, 6, 7
), histograms AS (
    SELECT day, metric, workflow, rule, tier, label, array_agg(n ORDER BY ord) AS buckets
    FROM elements GROUP BY 1, 2, 3, 4, 5, 6
)
SELECT t.day, t.metric, t.workflow, t.rule, t.tier, t.label, t.count, t.sum, coalesce(h.buckets, '{}')
FROM totals t LEFT JOIN histograms h USING (day, metric, workflow, rule, tier, label);

GRANT SELECT, INSERT, UPDATE, DELETE ON metric_days TO countersign_app;

-- +goose Down
CREATE INDEX metric_hours_hour ON metric_hours (hour);
DROP TABLE metric_days;
