-- name: ReceiptKeySigning :one
-- The generated key that signs, if there is one.
SELECT key_id, public_key, private_key, created_at FROM receipt_keys
WHERE private_key IS NOT NULL AND retired_at IS NULL;

-- name: ReceiptKeyInsert :many
-- A new key; nothing when another process's key won (receipt_keys_signing)
-- or the key is already recorded.
INSERT INTO receipt_keys (key_id, public_key, private_key) VALUES (@key_id, @public_key, @private_key)
ON CONFLICT DO NOTHING
RETURNING key_id;

-- name: ReceiptKeyList :many
-- Every key, retired ones too, oldest first. Never the private halves.
SELECT key_id, algorithm, public_key, created_at, retired_at FROM receipt_keys ORDER BY created_at, key_id;

-- name: ReceiptKeyRetire :execrows
UPDATE receipt_keys SET retired_at = now() WHERE key_id = @key_id AND retired_at IS NULL;
