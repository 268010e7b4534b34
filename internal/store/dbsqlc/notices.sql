-- name: NoticeEventInsert :one
INSERT INTO notice_events (kind, request_id, run_id, batch_id, roles, user_ids, subscribers, urgent, detail)
VALUES (@kind, sqlc.narg(request_id), sqlc.narg(run_id), sqlc.narg(batch_id), @roles::text[], @user_ids::bigint[],
        @subscribers, @urgent, @detail)
RETURNING *;

-- name: NoticeEventGet :one
SELECT * FROM notice_events WHERE id = @id;

-- name: NoticeRecipients :many
-- The active users an event reaches: by role, by name, or (for subscribers)
-- everyone whose own or role preferences include the event's kind; each with
-- the preferences that apply to them (their own, else their role's defaults;
-- builtin when neither exists).
SELECT u.id, u.email, u.name, u.role,
       (p.user_id IS NULL AND d.role IS NULL)::boolean AS builtin,
       coalesce(p.channels, d.channels, '{}')::text[] AS channels,
       coalesce(p.events, d.events, '{}')::text[] AS events,
       coalesce(p.quiet_start, d.quiet_start, 0)::int AS quiet_start,
       coalesce(p.quiet_end, d.quiet_end, 0)::int AS quiet_end,
       coalesce(p.time_zone, d.time_zone, 'UTC')::text AS time_zone
FROM users u
LEFT JOIN notice_preferences p ON p.user_id = u.id
LEFT JOIN notice_role_defaults d ON d.role = u.role
WHERE NOT u.disabled
  AND (u.role = ANY(@roles::text[]) OR u.id = ANY(@user_ids::bigint[])
       OR (@subscribers::boolean AND @kind::text = ANY(coalesce(p.events, d.events, '{}'))))
ORDER BY u.id;

-- name: NoticeDeliveryInsert :one
-- ON CONFLICT: a fan-out run twice (a retried job) delivers nothing twice.
INSERT INTO notice_deliveries (event_id, user_id, channel, not_before)
VALUES (@event_id, @user_id, @channel, @not_before)
ON CONFLICT (event_id, user_id, channel) DO NOTHING
RETURNING id;

-- name: NoticeOutletEnsure :exec
INSERT INTO notice_outlets (user_id, channel) VALUES (@user_id, @channel) ON CONFLICT DO NOTHING;

-- name: NoticeOutletSetFlush :exec
UPDATE notice_outlets SET flush_at = @flush_at WHERE user_id = @user_id AND channel = @channel;

-- name: NoticeOutletLock :one
SELECT * FROM notice_outlets WHERE user_id = @user_id AND channel = @channel FOR UPDATE;

-- name: NoticeOutletSent :exec
UPDATE notice_outlets SET last_sent_at = @sent_at, flush_at = sqlc.narg(flush_at) WHERE user_id = @user_id AND channel = @channel;

-- name: NoticeDeliveriesDue :many
SELECT * FROM notice_deliveries
WHERE user_id = @user_id AND channel = @channel AND message_id IS NULL AND not_before <= @now
ORDER BY id
FOR UPDATE;

-- name: NoticeDeliveryNextWaiting :many
-- When the earliest delivery still waiting may go (none: nothing waits).
SELECT not_before FROM notice_deliveries
WHERE user_id = @user_id AND channel = @channel AND message_id IS NULL
ORDER BY not_before LIMIT 1;

-- name: NoticeMessageInsert :one
INSERT INTO notice_messages (user_id, channel, digest) VALUES (@user_id, @channel, @digest) RETURNING *;

-- name: NoticeDeliveriesAttach :exec
UPDATE notice_deliveries SET message_id = @message_id WHERE id = ANY(@ids::bigint[]);

-- name: NoticeMessageGet :one
SELECT * FROM notice_messages WHERE id = @id;

-- name: NoticeMessageLock :one
SELECT * FROM notice_messages WHERE id = @id FOR UPDATE;

-- name: NoticeMessageEvents :many
-- The events a message carries, oldest first.
SELECT e.* FROM notice_events e JOIN notice_deliveries d ON d.event_id = e.id
WHERE d.message_id = @message_id ORDER BY e.id;

-- name: NoticeMessageRecord :one
-- Records one attempt and moves the message: sent, failed for good, or
-- still pending (the job retries).
WITH m AS (
    UPDATE notice_messages nm SET attempts = nm.attempts + 1, status = @status::text,
        last_error = @error::text, sent_at = CASE WHEN @status::text = 'sent' THEN now() END
    WHERE nm.id = @id RETURNING nm.*
), a AS (
    INSERT INTO notice_attempts (message_id, attempt, ok, error) SELECT m.id, m.attempts, m.status = 'sent', m.last_error FROM m
)
SELECT * FROM m;

-- name: NoticeMessageRetry :execrows
-- An admin's redelivery: a failed message becomes pending again.
UPDATE notice_messages SET status = 'pending' WHERE id = @id AND status = 'failed';

-- name: NoticeMessageList :many
-- Newest first; @failed limits the list to failures. Keyset on (created_at, id).
SELECT m.*, u.email,
       (SELECT count(*) FROM notice_deliveries d WHERE d.message_id = m.id)::int AS items
FROM notice_messages m JOIN users u ON u.id = m.user_id
WHERE (NOT @failed::boolean OR m.status = 'failed')
  AND (@before_id::bigint = 0 OR m.id < @before_id)
ORDER BY m.id DESC
LIMIT @max_rows;

-- name: NoticeAttemptList :many
SELECT * FROM notice_attempts WHERE message_id = @message_id ORDER BY attempt;

-- name: NoticePreferenceGet :one
SELECT * FROM notice_preferences WHERE user_id = @user_id;

-- name: NoticePreferenceSet :exec
INSERT INTO notice_preferences (user_id, channels, events, quiet_start, quiet_end, time_zone)
VALUES (@user_id, @channels::text[], @events::text[], @quiet_start, @quiet_end, @time_zone)
ON CONFLICT (user_id) DO UPDATE SET channels = excluded.channels, events = excluded.events,
    quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, time_zone = excluded.time_zone, updated_at = now();

-- name: NoticePreferenceDelete :exec
DELETE FROM notice_preferences WHERE user_id = @user_id;

-- name: NoticeRoleDefaultList :many
SELECT * FROM notice_role_defaults ORDER BY role;

-- name: NoticeRoleDefaultSet :exec
INSERT INTO notice_role_defaults (role, channels, events, quiet_start, quiet_end, time_zone)
VALUES (@role, @channels::text[], @events::text[], @quiet_start, @quiet_end, @time_zone)
ON CONFLICT (role) DO UPDATE SET channels = excluded.channels, events = excluded.events,
    quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end, time_zone = excluded.time_zone, updated_at = now();

-- name: NoticeSubscribed :one
-- Whether anyone's preferences (their own, or their role's when they have
-- none) name @kind, or a webhook subscribes to it: without subscribers an
-- event for them is not written.
SELECT (EXISTS (
    SELECT 1 FROM users u
    LEFT JOIN notice_preferences p ON p.user_id = u.id
    LEFT JOIN notice_role_defaults d ON d.role = u.role
    WHERE NOT u.disabled AND @kind::text = ANY(coalesce(p.events, d.events, '{}'))
) OR EXISTS (SELECT 1 FROM webhooks w WHERE @kind::text = ANY(w.events)))::boolean AS subscribed;
