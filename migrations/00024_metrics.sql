-- +goose Up
-- Metrics rollups (issue 15; internal/metrics, docs/OPERATIONS.md). A scrape
-- and the dashboard read these small tables, never the big ones.
--
-- One background roller (internal/metrics.Roller, in worker processes, under
-- an advisory lock) folds two sources into them, each in the transaction that
-- moves its cursor, so that every fact is counted exactly once:
--   * the audit chain, by seq (commit order, assigned once by the chainer):
--     run starts, approvals, decisions, deadlines, rollbacks, unusable flags;
--   * metric_run_queue: ids of runs that reached a final status, put there by
--     a trigger in the transaction that finished the run (one insert, no
--     shared row: appends never wait for each other); the roller reads the
--     run, its steps and its failed attempts, folds them and deletes the ids.
-- Nothing on the engine's path updates a shared counter row.
--
-- metric_hours: per hour (UTC) and key. metric is one of the store.Metric*
-- names; workflow, rule, tier and label are its dimensions ('' when the metric
-- has none; label is a status, step kind, verdict, cause, model or category as
-- the metric says). count is how many facts, sum the total of their values
-- (seconds, tokens), buckets the histogram: non-cumulative counts per bound
-- of store.MetricBounds(metric), the last one above every bound ('{}' for a
-- metric without a histogram).
CREATE TABLE metric_hours (
    hour     timestamptz NOT NULL,
    metric   text NOT NULL,
    workflow text NOT NULL DEFAULT '',
    rule     text NOT NULL DEFAULT '',
    tier     text NOT NULL DEFAULT '',
    label    text NOT NULL DEFAULT '',
    count    bigint NOT NULL DEFAULT 0,
    sum      double precision NOT NULL DEFAULT 0,
    buckets  bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (metric, hour, workflow, rule, tier, label)
);
-- The dashboard's ranges and the retention prune.
CREATE INDEX metric_hours_hour ON metric_hours (hour);

-- metric_totals: the same since the beginning, without the hour: what a
-- Prometheus scrape reads (its counters are totals). Its size is the number
-- of label combinations, not of runs or hours.
CREATE TABLE metric_totals (
    metric   text NOT NULL,
    workflow text NOT NULL DEFAULT '',
    rule     text NOT NULL DEFAULT '',
    tier     text NOT NULL DEFAULT '',
    label    text NOT NULL DEFAULT '',
    count    bigint NOT NULL DEFAULT 0,
    sum      double precision NOT NULL DEFAULT 0,
    buckets  bigint[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (metric, workflow, rule, tier, label)
);

-- Where each source's folding stands: 'audit' is the last audit seq folded.
CREATE TABLE metric_cursors (
    name       text PRIMARY KEY,
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO metric_cursors (name, position) VALUES ('audit', 0);

-- Runs that finished and are not folded yet.
CREATE TABLE metric_run_queue (
    run_id uuid PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now()
);

-- +goose StatementBegin
CREATE FUNCTION metric_run_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO metric_run_queue (run_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
-- Only the update that makes a run final fires it; bulk inserts (the
-- benchmark's million runs) do not.
CREATE TRIGGER workflow_runs_metric_finished AFTER UPDATE OF status ON workflow_runs
    FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'rejected', 'cancelled', 'compensated', 'compensation_failed')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION metric_run_finished();

-- Element-wise sum of two histograms (a missing element counts 0).
-- +goose StatementBegin
CREATE FUNCTION metric_buckets_add(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i), '{}'::bigint[])
    FROM unnest(a, b) WITH ORDINALITY AS u(x, y, i)
$$;
-- +goose StatementEnd

-- The model a model step used (the provider's answer), for tokens by model.
ALTER TABLE workflow_steps ADD COLUMN model text;

-- The gauge of waiting requests by tier and the oldest one's age: one small
-- partial index, read without the table.
CREATE INDEX approval_requests_waiting ON approval_requests (tier, created_at) WHERE status = 'pending';

GRANT SELECT, INSERT, UPDATE, DELETE ON metric_hours, metric_totals, metric_cursors, metric_run_queue TO countersign_app;

-- +goose Down
DROP INDEX approval_requests_waiting;
ALTER TABLE workflow_steps DROP COLUMN model;
DROP TRIGGER workflow_runs_metric_finished ON workflow_runs;
DROP FUNCTION metric_run_finished;
DROP FUNCTION metric_buckets_add;
DROP TABLE metric_run_queue, metric_cursors, metric_totals, metric_hours;
