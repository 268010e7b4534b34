-- +goose Up
-- API tokens get a public handle, scopes, an expiry and a record of who
-- revoked them. The secret itself stays a sha256 hash.
ALTER TABLE api_tokens
    ADD COLUMN public_id  text,
    ADD COLUMN scopes     text[],
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN revoked_by text;
-- Tokens made before scopes existed could do everything their user's role
-- allowed; they keep exactly that, so that no agent breaks on upgrade. Their
-- secrets were never stored, so their handle cannot be a prefix of the secret:
-- they are listed as legacy-<n>.
UPDATE api_tokens SET public_id = 'legacy-' || id,
    scopes = ARRAY['runs:read', 'runs:write', 'requests:read', 'decide', 'audit:read'];
ALTER TABLE api_tokens
    ALTER COLUMN public_id SET NOT NULL,
    ALTER COLUMN scopes SET NOT NULL,
    ADD CONSTRAINT api_tokens_public_id_key UNIQUE (public_id);
CREATE INDEX api_tokens_user ON api_tokens (user_id, created_at);

-- +goose Down
DROP INDEX api_tokens_user;
ALTER TABLE api_tokens DROP COLUMN public_id, DROP COLUMN scopes, DROP COLUMN expires_at, DROP COLUMN revoked_by;
