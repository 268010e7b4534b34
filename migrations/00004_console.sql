-- +goose Up
-- Console accounts. session_version is the server-side half of a session: a
-- cookie carries the version it was issued under, and bumping it (logout,
-- disable) ends every session of that user at once.
CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    email           text NOT NULL,
    name            text NOT NULL,
    role            text NOT NULL CHECK (role IN ('viewer', 'reviewer', 'approver', 'admin')),
    password_hash   text NOT NULL,
    disabled        boolean NOT NULL DEFAULT false,
    session_version integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email ON users (lower(email));

-- API tokens are stored as sha256 of the secret; the secret is shown once.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    token_hash   text NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- Failed sign-ins, for rate limiting per address and per (account, address):
-- never per account alone, so an attacker cannot lock a real user out.
CREATE TABLE login_failures (
    id    bigserial PRIMARY KEY,
    email text NOT NULL,
    ip    text NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_ip ON login_failures (ip, at);
CREATE INDEX login_failures_email_ip ON login_failures (lower(email), ip, at);

-- Secrets generated once per installation (the session cookie keys).
CREATE TABLE settings (
    key        text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE settings, login_failures, api_tokens, users;
