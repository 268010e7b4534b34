-- +goose Up
-- Runs at scale (issue 14). With a million finished runs the statistics say
-- that almost no run is queued or running, so the planner took the engine's
-- per-run updates (`WHERE id = $1 AND status = 'running' ...`) through any
-- index that starts with, or is restricted by, the status: the range of
-- 'running' looked empty, but every update of a run leaves a dead entry there
-- (no update of a run is HOT: updated_at is indexed), and the scan read them
-- all: 56 buffers instead of 5 through the primary key after six updates of
-- 2,000 runs, 116 in the issue. No index that
-- those updates could use may be searched by, or restricted to, the statuses
-- that runs pass through; the primary key is then their only way in.
--
-- Listing by status (RunList): ended runs, the bulk of the table, whose
-- entries do not churn, by a partial index keyed by status; runs under way by
-- one restricted to runs not finished, which RunList states and the engine's
-- updates never do. A run that is compensating has not finished either (it
-- finishes again when its undos are done): RunCompensateStart now clears
-- finished_at, and so does this migration for one under way.
DROP INDEX workflow_runs_status;
CREATE INDEX workflow_runs_status ON workflow_runs (status, created_at DESC, id DESC)
    WHERE status IN ('failed', 'completed', 'rejected', 'cancelled', 'compensated', 'compensation_failed');
UPDATE workflow_runs SET finished_at = NULL
WHERE finished_at IS NOT NULL
    AND status NOT IN ('failed', 'completed', 'rejected', 'cancelled', 'compensated', 'compensation_failed');
CREATE INDEX workflow_runs_open ON workflow_runs (status, created_at DESC, id DESC) WHERE finished_at IS NULL;
-- The sweeper's scan of lapsed leases: its `lease_until < now()` implies the
-- added condition, which none of the engine's updates states.
DROP INDEX workflow_runs_lease;
CREATE INDEX workflow_runs_lease ON workflow_runs (lease_until)
    WHERE status IN ('queued', 'running', 'retrying') AND lease_until IS NOT NULL;

-- Time-ordered ids (UUID version 7, RFC 9562): 48 bits of Unix milliseconds,
-- then the version, variant and 74 random bits of a version-4 uuid. A new
-- run's primary key entry, and its steps' (run_id, seq) entries, go at the
-- right edge of their indexes instead of a random leaf of a large index, so
-- that writes do not dirty (and after each checkpoint log whole images of)
-- pages all over them. Existing ids stay as they are: a uuid is a uuid.
-- PostgreSQL 18 has uuidv7(); this is for the versions before it.
-- +goose StatementBegin
CREATE FUNCTION countersign_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;
-- +goose StatementEnd
ALTER TABLE workflow_runs ALTER COLUMN id SET DEFAULT countersign_uuid_v7();
ALTER TABLE approval_requests ALTER COLUMN id SET DEFAULT countersign_uuid_v7();
ALTER TABLE batches ALTER COLUMN id SET DEFAULT countersign_uuid_v7();
ALTER TABLE batch_decisions ALTER COLUMN id SET DEFAULT countersign_uuid_v7();

-- +goose Down
ALTER TABLE workflow_runs ALTER COLUMN id SET DEFAULT gen_random_uuid();
ALTER TABLE approval_requests ALTER COLUMN id SET DEFAULT gen_random_uuid();
ALTER TABLE batches ALTER COLUMN id SET DEFAULT gen_random_uuid();
ALTER TABLE batch_decisions ALTER COLUMN id SET DEFAULT gen_random_uuid();
DROP FUNCTION countersign_uuid_v7();
DROP INDEX workflow_runs_lease;
CREATE INDEX workflow_runs_lease ON workflow_runs (lease_until)
    WHERE status IN ('queued', 'running', 'retrying');
DROP INDEX workflow_runs_open;
DROP INDEX workflow_runs_status;
CREATE INDEX workflow_runs_status ON workflow_runs (status, created_at DESC, id DESC);
