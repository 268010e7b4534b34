-- name: WebhookInsert :one
INSERT INTO webhooks (url, events, secret, created_by) VALUES (@url, @events::text[], @secret, @created_by)
RETURNING id, url, events, created_by, created_at;

-- name: WebhookList :many
SELECT id, url, events, created_by, created_at FROM webhooks ORDER BY id;

-- name: WebhookListForEvent :many
SELECT id, url FROM webhooks WHERE @kind::text = ANY (events) ORDER BY id;

-- name: WebhookDelete :execrows
DELETE FROM webhooks WHERE id = @id;

-- name: WebhookDelivered :one
-- Whether the subscription already has its delivery of subject (the fan-out
-- may run twice; the unique index is the guard, this the polite check).
SELECT EXISTS (SELECT 1 FROM callback_deliveries WHERE webhook_id = @webhook_id AND subject = @subject);
