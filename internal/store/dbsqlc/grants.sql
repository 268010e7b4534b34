-- name: GrantInsert :one
INSERT INTO policy_grants (rule, action_kind, tier, condition, ranges, policy_version, decided, approved,
    window_start, created_by, expires_at)
VALUES (@rule, @action_kind, @tier, @condition, @ranges, @policy_version, @decided, @approved,
    @window_start, @created_by, @expires_at)
RETURNING *;

-- name: GrantListLive :many
-- The grants in force: not revoked and not yet expired, oldest first.
SELECT * FROM policy_grants
WHERE revoked_at IS NULL AND expires_at > now()
ORDER BY id;

-- name: GrantListRecent :many
-- The grants for the console: every live one and the latest others.
SELECT * FROM policy_grants
ORDER BY (revoked_at IS NULL AND expires_at > now()) DESC, id DESC
LIMIT @max_rows;

-- name: GrantRevoke :one
UPDATE policy_grants SET revoked_at = now(), revoked_by = @actor::text
WHERE id = @id AND revoked_at IS NULL AND expires_at > now()
RETURNING *;
