-- name: PolicyLockTable :exec
LOCK TABLE policies IN SHARE ROW EXCLUSIVE MODE;

-- name: PolicyDeactivateAll :exec
UPDATE policies SET active = false WHERE active;

-- name: PolicyInsertActive :one
INSERT INTO policies (source, sha256, created_by, active, activated_by, activated_at)
VALUES (@source, @sha256, @actor::text, true, @actor::text, now()) RETURNING *;

-- name: PolicyGetActive :one
SELECT * FROM policies WHERE active;

-- name: PolicyGet :one
SELECT * FROM policies WHERE version = @version;

-- name: PolicyList :many
SELECT * FROM policies ORDER BY version DESC;
