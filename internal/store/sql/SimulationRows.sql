-- SimulationRows: the requests made since a time, oldest first, with what a
-- policy may read about their run (as it stood when the request was made: the
-- model calls and tokens of the steps before it) and the verdict they got. Run by hand
-- (store/policies.go) so that the rows stream through in constant memory;
-- sqlc collects a whole result.
SELECT r.*, w.business_key AS run_business_key, w.input AS run_input, w.attempt AS run_attempt,
    u.model_calls, u.tokens_used, coalesce(d.verdict, '') AS verdict
FROM approval_requests r
JOIN workflow_runs w ON w.id = r.run_id
CROSS JOIN LATERAL (
    SELECT coalesce(sum(s.attempts) FILTER (WHERE s.kind = 'model'), 0)::int AS model_calls,
        coalesce(sum(s.tokens), 0)::int AS tokens_used
    FROM workflow_steps s WHERE s.run_id = r.run_id AND s.seq < r.step_seq) u
LEFT JOIN decisions d ON d.request_id = r.id
WHERE r.created_at >= @since
ORDER BY r.created_at, r.id
