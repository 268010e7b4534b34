-- name: Notify :exec
-- PostgreSQL delivers the message when the surrounding transaction commits.
SELECT pg_notify('countersign', @payload::text);
