-- +goose Up
-- Runs under way that hold no lease time (new runs, runs resumed after a
-- decision) are swept once they have not been touched for a lease, so that a
-- run whose River job was cancelled, discarded or deleted before any
-- execution claimed it cannot stay queued forever. This is that scan's index.
CREATE INDEX workflow_runs_lease_unset ON workflow_runs (updated_at)
    WHERE lease_until IS NULL AND status IN ('queued', 'running', 'retrying');

-- +goose Down
DROP INDEX workflow_runs_lease_unset;
