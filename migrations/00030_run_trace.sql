-- +goose Up
-- The W3C traceparent of the span that started the run (OpenTelemetry, on
-- when OTEL_EXPORTER_OTLP_ENDPOINT is set): every execution of the run, its
-- first job and each resume after a decision, timer or event, starts its
-- spans under it, so that a run is one trace however long it waits. NULL
-- when tracing was off at the start (and for runs started before this).
ALTER TABLE workflow_runs ADD COLUMN trace_parent text
    CHECK (trace_parent IS NULL OR char_length(trace_parent) BETWEEN 1 AND 256);

-- +goose Down
ALTER TABLE workflow_runs DROP COLUMN trace_parent;
