-- +goose Up
-- The sweeper asks, for each run it looks at, which job of kind workflow_run
-- carries the run at its resume sequence (live_job.sql, RunOrphansLock.sql).
-- Written as JSON containment that lookup could use no index (River's GIN
-- index on args takes only constants): every candidate read every
-- workflow_run job River keeps, completed ones included (a day's worth), so
-- a sweep over a backlog of queued runs cost candidates × jobs. Keyed on the
-- two arguments, it is one index probe. River's migrations run before ours
-- (migrations.Up), so river_job exists here.
CREATE INDEX river_job_workflow_run ON river_job ((args->>'run_id'), (args->>'seq'))
    WHERE kind = 'workflow_run';

-- +goose Down
DROP INDEX river_job_workflow_run;
