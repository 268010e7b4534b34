-- +goose Up
-- Retry policies and compensation (issue 14, items 3 and 4).
--
-- workflow_step_attempts keeps every failed attempt of a step with its error
-- and when the next one is due: the steps row holds only the latest, and a
-- retried step's history is what a human reads to see why a run is slow.
CREATE TABLE workflow_step_attempts (
    run_id      uuid NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    attempt     integer NOT NULL CHECK (attempt > 0),
    name        text NOT NULL,
    error       text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    retry_at    timestamptz,
    PRIMARY KEY (run_id, seq, attempt)
);

-- compensation_cause is set once a run starts undoing its effects (failed,
-- rejected, cancelled) and says why; the run then executes its undos, not
-- its workflow function, and ends compensated or compensation_failed.
ALTER TABLE workflow_runs ADD COLUMN compensation_cause text
    CHECK (compensation_cause IN ('failed', 'rejected', 'cancelled'));

ALTER TABLE workflow_runs DROP CONSTRAINT workflow_runs_status_check;
ALTER TABLE workflow_runs ADD CONSTRAINT workflow_runs_status_check
    CHECK (status IN ('queued', 'running', 'waiting_human', 'retrying', 'sleeping', 'waiting_event',
                      'failed', 'completed', 'rejected', 'cancelled', 'compensated', 'compensation_failed'));

ALTER TABLE workflow_steps DROP CONSTRAINT workflow_steps_kind_check;
ALTER TABLE workflow_steps ADD CONSTRAINT workflow_steps_kind_check
    CHECK (kind IN ('step', 'model', 'effect', 'approval', 'sleep', 'event', 'compensation'));

-- +goose Down
ALTER TABLE workflow_steps DROP CONSTRAINT workflow_steps_kind_check;
ALTER TABLE workflow_steps ADD CONSTRAINT workflow_steps_kind_check
    CHECK (kind IN ('step', 'model', 'effect', 'approval', 'sleep', 'event'));
ALTER TABLE workflow_runs DROP CONSTRAINT workflow_runs_status_check;
ALTER TABLE workflow_runs ADD CONSTRAINT workflow_runs_status_check
    CHECK (status IN ('queued', 'running', 'waiting_human', 'retrying', 'sleeping', 'waiting_event',
                      'failed', 'completed', 'rejected', 'cancelled'));
ALTER TABLE workflow_runs DROP COLUMN compensation_cause;
DROP TABLE workflow_step_attempts;
