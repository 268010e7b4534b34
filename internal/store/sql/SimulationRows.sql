-- SimulationRows: the requests made since a time, oldest first, with what a
-- policy may read about their run and the verdict they got. Run by hand
-- (store/policies.go) so that the rows stream through in constant memory;
-- sqlc collects a whole result.
SELECT r.*, w.business_key AS run_business_key, w.input AS run_input, coalesce(d.verdict, '') AS verdict
FROM approval_requests r
JOIN workflow_runs w ON w.id = r.run_id
LEFT JOIN decisions d ON d.request_id = r.id
WHERE r.created_at >= @since
ORDER BY r.created_at, r.id
