-- +goose Up
-- Time-boxed grants promoted from decisions: "actions of this kind that this
-- rule sends to humans, within these parameter ranges, go to a looser tier
-- until expires_at". The policy cache splices each live grant into the active
-- policy as a rule just before the rule it narrows; its condition carries the
-- expiry (`now < timestamp(...)`), so an expired grant stops applying at the
-- next evaluation, without a restart.
CREATE TABLE policy_grants (
    id             bigserial PRIMARY KEY,
    rule           text NOT NULL,
    action_kind    text NOT NULL,
    tier           text NOT NULL CHECK (tier IN ('auto', 'batched')),
    -- The narrowing condition (CEL), without the base rule's condition and
    -- the expiry, which are added when the grant is spliced in.
    condition      text NOT NULL,
    -- The parameter ranges it was derived from: [{param, min, max}].
    ranges         jsonb NOT NULL DEFAULT '[]',
    policy_version integer NOT NULL,
    -- The evidence: decided and approved requests of the window.
    decided        integer NOT NULL,
    approved       integer NOT NULL,
    window_start   timestamptz NOT NULL,
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_by     text,
    revoked_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX policy_grants_live ON policy_grants (expires_at) WHERE revoked_at IS NULL;

-- The rule statistics and proposals read a window of requests and their
-- decisions by creation time: without these, each is a scan of the table.
-- A decision is made after its request, so the decisions of the window's
-- requests are all in the same window of decisions. Requests are a BRIN
-- index: they are inserted in time order (UUIDv7 ids, migration 23), so a
-- few block ranges hold a window, and a BRIN index is no path the inbox's
-- age filter could take instead of its own pending-only indexes (a btree
-- over every request was, sorting hundreds of rows, TestInboxFilterPlans).
CREATE INDEX approval_requests_created ON approval_requests USING brin (created_at);
CREATE INDEX decisions_created ON decisions (created_at) INCLUDE (request_id, verdict);

-- +goose Down
DROP INDEX decisions_created;
DROP INDEX approval_requests_created;
DROP TABLE policy_grants;
