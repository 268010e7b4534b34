-- +goose Up
-- The Ed25519 keys that sign decision receipts (internal/receipt). key_id is
-- the first 16 hex characters of sha256(public_key). private_key is the
-- 32-byte seed of a key the server generated; it is NULL for a key given in
-- COUNTERSIGN_RECEIPT_KEY, whose private half never enters the database (its
-- public half is recorded so that its receipts still verify once it is
-- replaced). A retired key signs nothing more but stays published: the
-- receipts it signed must go on verifying.
CREATE TABLE receipt_keys (
    key_id      text PRIMARY KEY,
    algorithm   text NOT NULL DEFAULT 'Ed25519' CHECK (algorithm = 'Ed25519'),
    public_key  bytea NOT NULL UNIQUE CHECK (length(public_key) = 32),
    private_key bytea CHECK (length(private_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
-- At most one generated key signs: processes that generate a key at once
-- collide on this index, and all of them read the one that won.
CREATE UNIQUE INDEX receipt_keys_signing ON receipt_keys ((true)) WHERE private_key IS NOT NULL AND retired_at IS NULL;
-- As with the session keys (migration 00007), the application role must not
-- read a private key: an SQL injection or a leaked database password would
-- sign receipts for decisions never made. Nor may it add a key that verifiers
-- would trust. It reads the public halves; a process running as it takes its
-- key from COUNTERSIGN_RECEIPT_KEY.
REVOKE ALL ON receipt_keys FROM countersign_app;
GRANT SELECT (key_id, algorithm, public_key, created_at, retired_at) ON receipt_keys TO countersign_app;

-- +goose Down
DROP TABLE receipt_keys;
