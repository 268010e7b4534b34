-- +goose Up
-- Sign-in attempts are counted in one row per (key, window): a single
-- INSERT ... ON CONFLICT increments it and returns the new count, so parallel
-- attempts cannot all read "under the limit" before any of them is recorded.
-- Keys are "ip:<address>" and "acct:<lower(email)>|<address>". throttled
-- counts refused attempts, so that they are audited once per address and
-- window with a count instead of once each; reported marks a window whose
-- total has been audited. The limits add the previous window's attempts, so
-- that a window boundary does not hand out a fresh allowance.
CREATE TABLE login_throttle (
    key          text NOT NULL,
    window_start timestamptz NOT NULL,
    attempts     int NOT NULL DEFAULT 0,
    throttled    int NOT NULL DEFAULT 0,
    reported     boolean NOT NULL DEFAULT false,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX login_throttle_window ON login_throttle (window_start);
GRANT SELECT, INSERT, UPDATE, DELETE ON login_throttle TO countersign_app;
DROP TABLE login_failures;
-- The session keys in settings sign and encrypt every session cookie: the
-- application role must not be able to read them (an SQL injection or a
-- leaked database password would forge an admin's session). A process
-- running as countersign_app takes its keys from COUNTERSIGN_SESSION_KEY or
-- COUNTERSIGN_SESSION_KEY_FILE instead.
REVOKE ALL ON settings FROM countersign_app;

-- +goose Down
GRANT SELECT, INSERT, UPDATE, DELETE ON settings TO countersign_app;
CREATE TABLE login_failures (
    id    bigserial PRIMARY KEY,
    email text NOT NULL,
    ip    text NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_ip ON login_failures (ip, at);
CREATE INDEX login_failures_email_ip ON login_failures (lower(email), ip, at);
GRANT SELECT, INSERT, UPDATE, DELETE ON login_failures TO countersign_app;
DROP TABLE login_throttle;
