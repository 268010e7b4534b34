-- +goose Up
-- HOT updates of runs (issue 14, second pass). An update that changes no
-- indexed column, and finds room on its row's page, is heap-only: it adds no
-- entry to any of the ten indexes of workflow_runs. The engine's per-step
-- update (StepComplete: the current step and the counters) no longer sets
-- updated_at, the key of workflow_runs_lease_unset, so it changes no indexed
-- column; this leaves each page room for the new versions of its rows, which
-- default-filled pages (100%) do not have. Only pages written from now on are
-- filled to this; existing pages get room as their rows are pruned.
ALTER TABLE workflow_runs SET (fillfactor = 70);

-- +goose Down
ALTER TABLE workflow_runs RESET (fillfactor);
