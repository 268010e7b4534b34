-- name: ClaimSet :one
-- Claiming takes the request over from a lapsed claim or from nobody; a live
-- claim by someone else is left alone (the upsert's WHERE), and the caller
-- reads back who holds it.
INSERT INTO request_claims (request_id, actor, claimed_at, renewed_at)
SELECT r.id, @actor::text, @now::timestamptz, @now::timestamptz
FROM approval_requests r WHERE r.id = @request_id AND r.status = 'pending'
ON CONFLICT (request_id) DO UPDATE SET actor = excluded.actor, claimed_at = excluded.claimed_at, renewed_at = excluded.renewed_at
    WHERE request_claims.actor = excluded.actor OR request_claims.renewed_at <= @lapsed_before::timestamptz
RETURNING request_id;

-- name: ClaimRenew :execrows
UPDATE request_claims SET renewed_at = @now::timestamptz
WHERE request_id = @request_id AND actor = @actor::text AND renewed_at > @lapsed_before::timestamptz;

-- name: ClaimRelease :execrows
DELETE FROM request_claims WHERE request_id = @request_id AND actor = @actor::text;

-- name: ClaimListLive :many
SELECT * FROM request_claims
WHERE request_id = ANY(@request_ids::uuid[]) AND renewed_at > @lapsed_before::timestamptz;

-- name: VoteListByActor :many
SELECT request_id FROM approval_votes WHERE actor = @actor::text AND request_id = ANY(@request_ids::uuid[]);

-- name: SavedFilterInsert :one
INSERT INTO saved_filters (user_id, name, query)
SELECT @user_id, @name, @query
WHERE (SELECT count(*) FROM saved_filters WHERE user_id = @user_id) < @max_per_user::int
ON CONFLICT (user_id, name) DO UPDATE SET query = excluded.query
RETURNING *;

-- name: SavedFilterList :many
SELECT * FROM saved_filters WHERE user_id = @user_id ORDER BY name;

-- name: SavedFilterDelete :execrows
DELETE FROM saved_filters WHERE id = @id AND user_id = @user_id;

-- name: ClaimListByActor :many
SELECT request_id FROM request_claims
WHERE actor = @actor::text AND renewed_at > @lapsed_before::timestamptz
ORDER BY renewed_at DESC
LIMIT @row_limit::int;
