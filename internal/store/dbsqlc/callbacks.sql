-- name: DeliveryInsert :one
INSERT INTO callback_deliveries (subject, event, token_id, webhook_id, url, body, next_attempt_at)
VALUES (@subject, @event, sqlc.narg(token_id), sqlc.narg(webhook_id), @url, @body, @next_attempt_at) RETURNING id;

-- name: DeliveryListBySubject :many
SELECT id, subject, event, url, status, attempts, last_status_code, last_error,
       next_attempt_at, created_at, delivered_at
FROM callback_deliveries WHERE subject = @subject ORDER BY id;

-- name: DeliveryList :many
-- Newest first, keyset on (created_at, id) after the cursor; an empty status
-- lists every delivery.
SELECT id, subject, event, url, status, attempts, last_status_code, last_error,
       next_attempt_at, created_at, delivered_at
FROM callback_deliveries
WHERE (@status::text = '' OR status = @status::text)
  AND (created_at, id) < (coalesce(sqlc.narg(before_at)::timestamptz, 'infinity'), coalesce(sqlc.narg(before_id)::bigint, 0))
ORDER BY created_at DESC, id DESC
LIMIT @lim;

-- name: DeliveryGet :one
SELECT id, subject, event, url, status, attempts, last_status_code, last_error,
       next_attempt_at, created_at, delivered_at
FROM callback_deliveries WHERE id = @id;

-- name: DeliveryLockForSend :one
-- The row lock is held while the delivery is sent, so that two jobs for one
-- delivery (a rescued job, a redelivery) never both POST it.
-- A delivery is signed by its token's callback secret or its webhook's.
SELECT d.id, d.subject, d.event, d.url, d.body, d.status, d.attempts,
       coalesce(t.callback_secret, w.secret)::bytea AS callback_secret
FROM callback_deliveries d LEFT JOIN api_tokens t ON t.public_id = d.token_id
     LEFT JOIN webhooks w ON w.id = d.webhook_id
WHERE d.id = @id FOR UPDATE OF d;

-- name: DeliveryRecordAttempt :execrows
UPDATE callback_deliveries
SET attempts = attempts + 1, status = @status, last_status_code = sqlc.narg(status_code),
    last_error = sqlc.narg(error), next_attempt_at = sqlc.narg(next_attempt_at),
    delivered_at = CASE WHEN @status = 'delivered' THEN @at::timestamptz END
WHERE id = @id AND status = 'pending';

-- name: AttemptInsert :exec
INSERT INTO callback_attempts (delivery_id, attempt, status_code, error, duration_us, at)
SELECT @delivery_id, attempts, sqlc.narg(status_code), sqlc.narg(error), @duration_us, @at
FROM callback_deliveries WHERE id = @delivery_id;

-- name: AttemptList :many
SELECT delivery_id, attempt, status_code, error, duration_us, at
FROM callback_attempts WHERE delivery_id = @delivery_id ORDER BY attempt;

-- name: DeliveryRedeliver :execrows
-- Only a failed delivery goes out again; its attempts keep counting.
UPDATE callback_deliveries SET status = 'pending', next_attempt_at = @at::timestamptz, last_error = NULL
WHERE id = @id AND status = 'failed';
