-- name: SlackMessageInsert :exec
INSERT INTO slack_messages (channel, ts, request_ids, blocks, text) VALUES (@channel, @ts, @request_ids::uuid[], @blocks, @text)
ON CONFLICT (channel, ts) DO NOTHING;

-- name: SlackMessagesForRequest :many
-- Locked, so that two decisions shown in one message update it one after the other.
SELECT channel, ts, request_ids, blocks, text FROM slack_messages
WHERE request_ids @> ARRAY[@request_id::uuid] ORDER BY created_at, channel, ts FOR UPDATE;

-- name: SlackMessageSetBlocks :exec
UPDATE slack_messages SET blocks = @blocks, text = @text WHERE channel = @channel AND ts = @ts;
