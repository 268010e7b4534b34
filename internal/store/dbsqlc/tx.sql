-- name: TxCommitAsync :exec
-- The surrounding transaction's commit returns without waiting for its WAL
-- to reach disk (synchronous_commit off, for this transaction only).
SELECT set_config('synchronous_commit', 'off', true);
