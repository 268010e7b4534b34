-- +goose Up
-- Run leases: the execution that claimed a run holds it until lease_until and
-- renews it while it works; lease_owner is that execution's fencing token, so
-- an execution that lost its lease cannot record another step. Workers sweep
-- the runs whose lease lapsed and hand them to a new job (failures counts the
-- error attempts, recoveries the crashes, so that one does not spend the other).
ALTER TABLE workflow_runs
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN lease_owner uuid,
    ADD COLUMN failures    integer NOT NULL DEFAULT 0,
    ADD COLUMN recoveries  integer NOT NULL DEFAULT 0;
-- The sweeper's scan: only runs that are under way, by when to look at them.
CREATE INDEX workflow_runs_lease ON workflow_runs (lease_until)
    WHERE status IN ('queued', 'running', 'retrying');

-- +goose Down
DROP INDEX workflow_runs_lease;
ALTER TABLE workflow_runs DROP COLUMN lease_until, DROP COLUMN lease_owner,
    DROP COLUMN failures, DROP COLUMN recoveries;
