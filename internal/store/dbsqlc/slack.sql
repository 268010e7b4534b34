-- name: SlackMessageInsert :exec
INSERT INTO slack_messages (channel, ts, request_ids, blocks, text) VALUES (@channel, @ts, @request_ids::uuid[], @blocks, @text)
ON CONFLICT (channel, ts) DO NOTHING;

-- name: SlackMessageSetBlocks :exec
UPDATE slack_messages SET blocks = @blocks, text = @text WHERE channel = @channel AND ts = @ts;

-- name: SlackUpdatesInsert :execrows
-- One row per recorded copy of the request; none when no message shows it.
INSERT INTO slack_updates (request_id, channel, ts, outcome)
SELECT @request_id::uuid, channel, ts, @outcome FROM slack_messages
WHERE request_ids @> ARRAY[@request_id::uuid]
ON CONFLICT (request_id, channel, ts) DO NOTHING;

-- name: SlackUpdatesPending :many
SELECT id FROM slack_updates WHERE request_id = @request_id AND done_at IS NULL ORDER BY id;

-- name: SlackUpdateLock :one
-- The update and its message, both locked: two decisions shown in one
-- message update it one after the other, and a copy is done once. NO KEY
-- UPDATE, since the lock is held across the call to Slack: a decision of
-- another request in the message inserts its own slack_updates row, whose
-- foreign key takes KEY SHARE on the message, and must not wait for Slack.
SELECT u.id, u.request_id, u.outcome, m.channel, m.ts, m.blocks, m.text
FROM slack_updates u JOIN slack_messages m ON m.channel = u.channel AND m.ts = u.ts
WHERE u.id = @id AND u.done_at IS NULL
FOR NO KEY UPDATE;

-- name: SlackUpdateDone :execrows
UPDATE slack_updates SET done_at = now(), attempts = attempts + 1, last_error = @last_error
WHERE id = @id AND done_at IS NULL;

-- name: SlackUpdateFailed :exec
UPDATE slack_updates SET attempts = attempts + 1, last_error = @last_error WHERE id = @id;

-- name: SlackRequestsLockShared :exec
-- Waits for any decision of these requests being committed (it holds the
-- request's row lock), so that what is read next sees it.
SELECT id FROM approval_requests WHERE id = ANY (@request_ids::uuid[]) ORDER BY id FOR SHARE;

-- name: SlackDecidedAmong :many
-- The requests among these that are decided, with who decided, how, when and
-- where (the channel the decision's audit event names).
SELECT r.id, r.deadline, d.verdict, d.actor, d.created_at,
    coalesce((SELECT a.details->>'channel' FROM audit_events a
              WHERE a.run_id = r.run_id AND a.subject_id = r.id::text AND a.kind = 'decision.recorded'
              ORDER BY a.id DESC LIMIT 1), '')::text AS channel
FROM approval_requests r JOIN decisions d ON d.request_id = r.id
WHERE r.id = ANY (@request_ids::uuid[])
ORDER BY r.id;

-- name: SlackUpdateInsert :execrows
INSERT INTO slack_updates (request_id, channel, ts, outcome) VALUES (@request_id, @channel, @ts, @outcome)
ON CONFLICT (request_id, channel, ts) DO NOTHING;
