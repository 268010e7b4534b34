-- +goose Up
-- Runs, their durable steps, approval requests and decisions, and the ledger of
-- side effects. Indexes follow what the console asks: waiting requests by
-- tier/deadline/age, runs by status and workflow, newest first.
CREATE TABLE workflow_runs (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workflow      text NOT NULL,
    business_key  text NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'waiting_human', 'retrying',
                                    'failed', 'completed', 'rejected', 'cancelled')),
    input         jsonb NOT NULL DEFAULT '{}',
    output        jsonb,
    error_code    text,
    error_message text,
    attempt       integer NOT NULL DEFAULT 0,
    current_step  text NOT NULL DEFAULT '',
    resume_seq    integer NOT NULL DEFAULT 0,
    steps_used    integer NOT NULL DEFAULT 0,
    model_calls   integer NOT NULL DEFAULT 0,
    tokens_used   integer NOT NULL DEFAULT 0,
    started_by    text NOT NULL DEFAULT 'system',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    CONSTRAINT workflow_runs_business_key UNIQUE (workflow, business_key)
);
CREATE INDEX workflow_runs_created ON workflow_runs (created_at DESC, id DESC);
CREATE INDEX workflow_runs_status ON workflow_runs (status, created_at DESC, id DESC);
CREATE INDEX workflow_runs_workflow ON workflow_runs (workflow, status, created_at DESC, id DESC);
CREATE INDEX workflow_runs_key ON workflow_runs (business_key text_pattern_ops);

CREATE TABLE workflow_steps (
    run_id      uuid NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('step', 'model', 'effect', 'approval')),
    status      text NOT NULL CHECK (status IN ('completed', 'failed', 'waiting')),
    output      jsonb,
    error       text,
    attempts    integer NOT NULL DEFAULT 1,
    tokens      integer NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE approval_requests (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id             uuid NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    step_seq           integer NOT NULL,
    workflow           text NOT NULL,
    tier               text NOT NULL CHECK (tier IN ('auto', 'batched', 'explicit')),
    status             text NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'approved', 'rejected', 'changes_requested', 'cancelled')),
    action_kind        text NOT NULL,
    summary            text NOT NULL,
    action             jsonb NOT NULL,
    payload_hash       text NOT NULL,
    policy_version     integer NOT NULL,
    rule               text NOT NULL,
    reason             text NOT NULL,
    approvals_required integer NOT NULL DEFAULT 1,
    roles              text[] NOT NULL DEFAULT '{}',
    deadline           timestamptz,
    on_timeout         text NOT NULL DEFAULT '',
    escalate_to        text[] NOT NULL DEFAULT '{}',
    escalated_at       timestamptz,
    batch_key          text NOT NULL DEFAULT '',
    started_by         text NOT NULL DEFAULT 'system',
    created_at         timestamptz NOT NULL DEFAULT now(),
    decided_at         timestamptz,
    decided_by         text,
    CONSTRAINT approval_requests_step UNIQUE (run_id, step_seq)
);
-- The inbox: explicit before batched, then by deadline (none last), then by
-- age. The expressions are the keyset the console pages with.
CREATE INDEX approval_requests_inbox ON approval_requests
    ((CASE tier WHEN 'explicit' THEN 0 ELSE 1 END), (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    WHERE status = 'pending';
CREATE INDEX approval_requests_recent ON approval_requests (tier, created_at DESC, id DESC);
CREATE INDEX approval_requests_status ON approval_requests (status, created_at DESC, id DESC);

-- One row per distinct approver while a rule needs more than one approval.
CREATE TABLE approval_votes (
    request_id uuid NOT NULL REFERENCES approval_requests (id) ON DELETE CASCADE,
    actor      text NOT NULL,
    comment    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, actor)
);

-- Exactly one decision per request: the UNIQUE constraint backs the
-- conditional update that picks the winner.
CREATE TABLE decisions (
    id                bigserial PRIMARY KEY,
    request_id        uuid NOT NULL UNIQUE REFERENCES approval_requests (id) ON DELETE CASCADE,
    run_id            uuid NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    actor             text NOT NULL,
    verdict           text NOT NULL CHECK (verdict IN ('approve', 'reject', 'edit', 'request_changes')),
    reason            text NOT NULL DEFAULT '',
    comment           text NOT NULL DEFAULT '',
    edited_params     jsonb,
    diff              jsonb,
    payload_hash      text NOT NULL,
    policy_version    integer NOT NULL,
    rule              text NOT NULL,
    tier              text NOT NULL,
    batch_decision_id uuid,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_run ON decisions (run_id);

-- The ledger of effects, keyed by the step's idempotency key (run:step).
CREATE TABLE side_effects (
    idempotency_key text PRIMARY KEY,
    run_id          uuid NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    step_name       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The demo's stand-in for the outside world. The key is deliberately not
-- unique, so that a duplicated effect would show up as two rows.
CREATE TABLE demo_outbox (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL,
    run_id          uuid NOT NULL,
    kind            text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX demo_outbox_key ON demo_outbox (idempotency_key);

-- +goose Down
DROP TABLE demo_outbox, side_effects, decisions, approval_votes, approval_requests, workflow_steps, workflow_runs;
