-- name: Notify :exec
-- PostgreSQL delivers the message when the surrounding transaction commits.
SELECT pg_notify('countersign', @payload::text);

-- name: NotifyMany :exec
-- Several messages in one statement and one commit (notify.Coalescer), sent
-- on its own: its commit does not wait for its WAL flush (synchronous_commit
-- off for this statement's transaction), since a signal is not durable
-- anyway, and a notifying commit holds PostgreSQL's one notification-queue
-- lock (for the whole cluster) until it returns.
SELECT set_config('synchronous_commit', 'off', true), pg_notify('countersign', p) FROM unnest(@payloads::text[]) AS p;
