-- +goose Up
-- Batches group low-risk requests of one group (the rule's group_by keys) so
-- that a reviewer decides many in one considered action. One batch per group
-- is open at a time; it closes (ready) at max_size or when max_wait passes.
CREATE TABLE batches (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    group_key   text NOT NULL,
    rule        text NOT NULL,
    workflow    text NOT NULL,
    action_kind text NOT NULL,
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'ready', 'decided')),
    max_size    integer NOT NULL,
    size        integer NOT NULL DEFAULT 0,
    opened_at   timestamptz NOT NULL DEFAULT now(),
    closes_at   timestamptz NOT NULL,
    closed_at   timestamptz,
    decided_at  timestamptz
);
CREATE UNIQUE INDEX batches_one_open ON batches (group_key) WHERE status = 'open';
CREATE INDEX batches_status ON batches (status, closed_at, id);

ALTER TABLE approval_requests ADD COLUMN batch_id uuid REFERENCES batches (id);
ALTER TABLE approval_requests ADD COLUMN note text NOT NULL DEFAULT '';
CREATE INDEX approval_requests_batch ON approval_requests (batch_id, created_at, id) WHERE batch_id IS NOT NULL;

-- One reviewer action on a batch; its item decisions point here.
CREATE TABLE batch_decisions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    batch_id   uuid NOT NULL REFERENCES batches (id),
    actor      text NOT NULL,
    action     text NOT NULL CHECK (action IN ('approve_selected', 'approve_reject_rest', 'reject_all')),
    reason     text NOT NULL DEFAULT '',
    approved   integer NOT NULL DEFAULT 0,
    rejected   integer NOT NULL DEFAULT 0,
    left_out   integer NOT NULL DEFAULT 0,
    refused    jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Escalated requests go first in the inbox: the rank gains a level.
DROP INDEX approval_requests_inbox;
CREATE INDEX approval_requests_inbox ON approval_requests
    ((CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
     (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    WHERE status = 'pending';
CREATE INDEX approval_requests_deadline ON approval_requests (deadline) WHERE status = 'pending' AND deadline IS NOT NULL;

-- +goose Down
DROP INDEX approval_requests_inbox;
CREATE INDEX approval_requests_inbox ON approval_requests
    ((CASE tier WHEN 'explicit' THEN 0 ELSE 1 END), (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    WHERE status = 'pending';
ALTER TABLE approval_requests DROP COLUMN batch_id, DROP COLUMN note;
DROP TABLE batch_decisions, batches;
