-- +goose Up
-- The version of its workflow a run started with: it executes under that
-- version's code for its whole life, so that a run waiting for a human
-- survives a deploy that changed the workflow. Runs started before versions
-- existed ran the only code there was, version 1.
ALTER TABLE workflow_runs ADD COLUMN version int NOT NULL DEFAULT 1 CHECK (version >= 1);

-- +goose Down
ALTER TABLE workflow_runs DROP COLUMN version;
