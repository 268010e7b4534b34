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
-- message update it one after the other, and a copy is done once.
SELECT u.id, u.request_id, u.outcome, m.channel, m.ts, m.blocks, m.text
FROM slack_updates u JOIN slack_messages m ON m.channel = u.channel AND m.ts = u.ts
WHERE u.id = @id AND u.done_at IS NULL
FOR UPDATE;

-- name: SlackUpdateDone :execrows
UPDATE slack_updates SET done_at = now(), attempts = attempts + 1, last_error = @last_error
WHERE id = @id AND done_at IS NULL;

-- name: SlackUpdateFailed :exec
UPDATE slack_updates SET attempts = attempts + 1, last_error = @last_error WHERE id = @id;
