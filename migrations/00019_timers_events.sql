-- +goose Up
-- Durable timers and external events (internal/workflow timer.go, event.go).
-- A run parked by Sleep is 'sleeping' and one parked by WaitEvent is
-- 'waiting_event': neither holds a worker or a running job; a River job
-- scheduled at the step's wake_at resumes it.
ALTER TABLE workflow_runs DROP CONSTRAINT workflow_runs_status_check;
ALTER TABLE workflow_runs ADD CONSTRAINT workflow_runs_status_check
    CHECK (status IN ('queued', 'running', 'waiting_human', 'retrying', 'sleeping', 'waiting_event',
                      'failed', 'completed', 'rejected', 'cancelled'));
ALTER TABLE workflow_steps DROP CONSTRAINT workflow_steps_kind_check;
ALTER TABLE workflow_steps ADD CONSTRAINT workflow_steps_kind_check
    CHECK (kind IN ('step', 'model', 'effect', 'approval', 'sleep', 'event'));
-- When a waiting sleep step is due, or a waiting event step times out (NULL:
-- it waits for ever). The sweeper wakes parked runs whose wake_at passed and
-- whose job was lost; the run page shows it.
ALTER TABLE workflow_steps ADD COLUMN wake_at timestamptz;
CREATE INDEX workflow_runs_parked ON workflow_runs (id) WHERE status IN ('sleeping', 'waiting_event');

-- Events delivered to runs (POST /api/v1/runs/{id}/events/{name}, `countersign
-- run signal`). An event is kept until a WaitEvent of its name consumes it,
-- oldest first, so one that arrives before the run reaches the wait is not
-- lost; (run, name, key) makes a repeated delivery a no-op.
CREATE TABLE run_events (
    id              bigserial PRIMARY KEY,
    run_id          uuid NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    payload         jsonb NOT NULL,
    sent_by         text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    consumed_seq    integer,
    consumed_at     timestamptz,
    CONSTRAINT run_events_key UNIQUE (run_id, name, idempotency_key)
);
CREATE INDEX run_events_pending ON run_events (run_id, name, id) WHERE consumed_seq IS NULL;
GRANT SELECT, INSERT, UPDATE, DELETE ON run_events TO countersign_app;
GRANT USAGE, SELECT ON SEQUENCE run_events_id_seq TO countersign_app;

-- +goose Down
DROP TABLE run_events;
DROP INDEX workflow_runs_parked;
ALTER TABLE workflow_steps DROP COLUMN wake_at;
ALTER TABLE workflow_steps DROP CONSTRAINT workflow_steps_kind_check;
ALTER TABLE workflow_steps ADD CONSTRAINT workflow_steps_kind_check
    CHECK (kind IN ('step', 'model', 'effect', 'approval'));
ALTER TABLE workflow_runs DROP CONSTRAINT workflow_runs_status_check;
ALTER TABLE workflow_runs ADD CONSTRAINT workflow_runs_status_check
    CHECK (status IN ('queued', 'running', 'waiting_human', 'retrying',
                      'failed', 'completed', 'rejected', 'cancelled'));
