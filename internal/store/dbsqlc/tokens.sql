-- name: TokenInsert :one
INSERT INTO api_tokens (user_id, public_id, name, token_hash, scopes, expires_at, callback_secret)
VALUES (@user_id, @public_id, @name, @token_hash, @scopes, @expires_at, @callback_secret) RETURNING *;

-- name: TokenGetByHash :one
SELECT sqlc.embed(t), sqlc.embed(u)
FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = @token_hash;

-- name: TokenGetForUpdate :one
SELECT sqlc.embed(t), u.email AS user_email
FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.public_id = @public_id FOR UPDATE OF t;

-- name: TokenList :many
-- An empty email lists every user's tokens.
SELECT sqlc.embed(t), u.email AS user_email
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE @email::text = '' OR lower(u.email) = lower(@email::text)
ORDER BY t.created_at DESC, t.id DESC;

-- name: TokenRevoke :execrows
UPDATE api_tokens SET revoked_at = @revoked_at, revoked_by = @revoked_by WHERE id = @id AND revoked_at IS NULL;

-- name: TokenTouch :exec
UPDATE api_tokens SET last_used_at = @now::timestamptz
WHERE id = @id AND (last_used_at IS NULL OR last_used_at <= @touched_before::timestamptz);
