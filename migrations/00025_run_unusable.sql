-- +goose Up
-- "Completed but unusable" (issue 15): a reviewer or an API client says a
-- completed run's output could not be used, with a category (vocab
-- UnusableCategory) and a reason. One flag per run; the flag is audited
-- (run.flagged_unusable) in the same transaction and counted by the metrics
-- roller from that event.
CREATE TABLE run_unusable (
    run_id     uuid PRIMARY KEY REFERENCES workflow_runs (id) ON DELETE CASCADE,
    workflow   text NOT NULL,
    category   text NOT NULL
               CHECK (category IN ('incorrect', 'incomplete', 'format', 'unsafe', 'irrelevant', 'other')),
    reason     text NOT NULL CHECK (length(reason) BETWEEN 1 AND 2000),
    flagged_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The console's list, newest first, all or one category.
CREATE INDEX run_unusable_recent ON run_unusable (created_at DESC, run_id DESC);
CREATE INDEX run_unusable_category ON run_unusable (category, created_at DESC, run_id DESC);
GRANT SELECT, INSERT, UPDATE, DELETE ON run_unusable TO countersign_app;

-- +goose Down
DROP TABLE run_unusable;
