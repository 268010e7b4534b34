-- name: UserInsert :one
INSERT INTO users (email, name, role, password_hash) VALUES (@email, @name, @role, @password_hash) RETURNING *;

-- name: UserGetByEmail :one
SELECT * FROM users WHERE lower(email) = lower(@email);

-- name: UserGet :one
SELECT * FROM users WHERE id = @id;

-- name: UserList :many
SELECT * FROM users ORDER BY lower(email);

-- name: UserSetDisabled :execrows
-- Disabling ends the user's sessions.
UPDATE users SET disabled = @disabled, session_version = session_version + 1, updated_at = now() WHERE id = @id;

-- name: UserSetRole :execrows
UPDATE users SET role = @role, session_version = session_version + 1, updated_at = now() WHERE id = @id;

-- name: UserEndSessions :execrows
UPDATE users SET session_version = session_version + 1, updated_at = now() WHERE id = @id;

-- name: LoginAttemptCount :many
-- Each increment is one upsert, so parallel callers see distinct counts; the
-- keys are taken in the caller's order so that concurrent callers lock rows
-- in the same order.
WITH up AS (
    INSERT INTO login_throttle (key, window_start, attempts)
    SELECT k, date_bin(@window_length::interval, now(), 'epoch'::timestamptz), 1
    FROM unnest(@keys::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n
    ON CONFLICT (key, window_start) DO UPDATE SET attempts = login_throttle.attempts + 1
    RETURNING key, window_start, attempts
)
SELECT up.key, up.window_start, (up.attempts + coalesce(prev.attempts, 0))::int AS attempts
FROM up LEFT JOIN login_throttle prev ON prev.key = up.key AND prev.window_start = up.window_start - @window_length::interval;

-- name: LoginAttemptForgive :exec
UPDATE login_throttle SET attempts = greatest(attempts - 1, 0)
WHERE key = ANY(@keys::text[]) AND window_start = @window_start;

-- name: LoginWindowCount :one
-- One more attempt for key in the current window; unlike LoginAttemptCount it
-- leaves the previous window out: it bounds what one window writes.
INSERT INTO login_throttle (key, window_start, attempts)
VALUES (@key, date_bin(@window_length::interval, now(), 'epoch'::timestamptz), 1)
ON CONFLICT (key, window_start) DO UPDATE SET attempts = login_throttle.attempts + 1
RETURNING attempts, window_start;

-- name: LoginThrottledCount :one
UPDATE login_throttle SET throttled = throttled + 1
WHERE key = @key AND window_start = @window_start RETURNING throttled;

-- name: LoginThrottleClose :many
-- Windows too old to count (before the previous one) are deleted; those that
-- ended with refused attempts are returned once each, row locks giving each
-- to one caller only.
WITH cur AS (SELECT date_bin(@window_length::interval, now(), 'epoch'::timestamptz) AS start),
gone AS (
    DELETE FROM login_throttle USING cur WHERE window_start < cur.start - @window_length::interval
    RETURNING key, window_start, throttled, reported
),
done AS (
    UPDATE login_throttle SET reported = true FROM cur
    WHERE window_start >= cur.start - @window_length::interval AND window_start < cur.start AND throttled > 0 AND NOT reported
    RETURNING key, window_start, throttled
)
SELECT key, window_start, throttled FROM gone WHERE throttled > 0 AND NOT reported
UNION ALL SELECT key, window_start, throttled FROM done;

-- name: SettingGetOrCreate :one
WITH ins AS (
    INSERT INTO settings (key, value) VALUES (@key, @value) ON CONFLICT (key) DO NOTHING RETURNING value
) SELECT value FROM ins UNION ALL SELECT value FROM settings WHERE key = @key LIMIT 1;

-- name: SettingGet :one
SELECT value FROM settings WHERE key = @key;
