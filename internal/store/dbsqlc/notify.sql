-- name: Notify :exec
-- PostgreSQL delivers the message when the surrounding transaction commits.
SELECT pg_notify('countersign', @payload::text);

-- name: NotifyMany :exec
-- Several messages in one statement and one commit (notify.Coalescer).
SELECT pg_notify('countersign', p) FROM unnest(@payloads::text[]) AS p;
