-- +goose Up
-- "I'm reviewing this": at most one claim per pending request, by the
-- reviewer's name (the actor name decisions and votes use). A claim only
-- informs others and never blocks a decision; it lapses when renewed_at is
-- older than the claim timeout (store.ClaimTimeout), which readers apply, so
-- nothing has to sweep lapsed claims. A decided request's claim is left in
-- place and simply no longer shown (the inbox lists pending requests only).
CREATE TABLE request_claims (
    request_id uuid PRIMARY KEY REFERENCES approval_requests (id) ON DELETE CASCADE,
    actor      text NOT NULL,
    claimed_at timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL
);
-- The "Claimed by me" filter looks up the claimer's requests.
CREATE INDEX request_claims_actor ON request_claims (actor, renewed_at);

-- A reviewer's named inbox filter sets: the filter query string, validated
-- again by the inbox whenever it is applied.
CREATE TABLE saved_filters (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    query      text NOT NULL CHECK (length(query) <= 1000),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

-- +goose Down
DROP TABLE saved_filters, request_claims;
