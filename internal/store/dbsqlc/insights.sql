-- name: RequestWindowStart :one
-- The creation time of the request that many (skip) places before the
-- newest of those made since a time: where a window of at most skip+1 of the
-- latest requests starts. No row when the window holds fewer.
SELECT created_at FROM approval_requests
WHERE created_at >= @since
ORDER BY created_at DESC
OFFSET @skip LIMIT 1;

-- name: RuleStats :many
-- Per rule, and per rule and action kind, what the requests made since a time
-- became. Human figures leave out the auto tier; times to decision run from
-- the request's creation to its decision. An approval by the policy itself
-- (actor policy:RULE, a batched rule's on_timeout: approve) is no human
-- approval: it is counted apart. The decisions are read through
-- their own window (a decision is never older than its request), so that
-- both tables are range scans of their created_at indexes.
SELECT r.rule, coalesce(r.action_kind, '')::text AS action_kind,
    (GROUPING(r.action_kind) = 1)::bool AS rule_total,
    count(*)::int AS volume,
    count(*) FILTER (WHERE r.tier = 'auto')::int AS auto,
    count(*) FILTER (WHERE r.tier <> 'auto' AND d.verdict IS NULL)::int AS undecided,
    count(*) FILTER (WHERE r.tier <> 'auto' AND d.verdict = 'approve' AND d.actor NOT LIKE 'policy:%')::int AS approved,
    count(*) FILTER (WHERE r.tier <> 'auto' AND d.verdict = 'approve' AND d.actor LIKE 'policy:%')::int AS deadline_approvals,
    count(*) FILTER (WHERE r.tier <> 'auto' AND d.verdict = 'reject')::int AS rejected,
    count(*) FILTER (WHERE r.tier <> 'auto' AND d.verdict = 'edit')::int AS edited,
    count(*) FILTER (WHERE r.tier <> 'auto' AND d.verdict = 'request_changes')::int AS changes_requested,
    coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.created_at - r.created_at))
        FILTER (WHERE r.tier <> 'auto' AND d.verdict IS NOT NULL), 0)::float8 AS median_seconds,
    coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM d.created_at - r.created_at))
        FILTER (WHERE r.tier <> 'auto' AND d.verdict = 'approve' AND d.actor NOT LIKE 'policy:%'), 0)::float8 AS median_approve_seconds,
    count(*) FILTER (WHERE r.tier <> 'auto' AND d.verdict = 'approve' AND d.actor NOT LIKE 'policy:%'
        AND d.created_at - r.created_at < interval '1 microsecond' * @fast_micros::bigint)::int AS fast_approvals
FROM approval_requests r
LEFT JOIN decisions d ON d.request_id = r.id AND d.created_at >= @since
WHERE r.created_at >= @since
GROUP BY GROUPING SETS ((r.rule), (r.rule, r.action_kind))
ORDER BY r.rule, rule_total DESC, volume DESC, action_kind
LIMIT @max_rows;

-- name: RuleParamRanges :many
-- The parameters of the actions humans approved as they were proposed
-- (verdict approve, not edit, not by a deadline) since a time, for each of the given (rule,
-- action kind) pairs: every name, in how many it appears, in how many as a
-- number (and as a number too large for a float), and the range of those
-- numbers. One pass over the window whatever the number of pairs.
SELECT r.rule, r.action_kind, p.key::text AS param, count(*)::int AS n,
    count(v.num)::int AS numbers,
    count(*) FILTER (WHERE abs(v.num) >= 1e300)::int AS huge,
    coalesce(min(v.num) FILTER (WHERE abs(v.num) < 1e300), 0)::float8 AS min_value,
    coalesce(max(v.num) FILTER (WHERE abs(v.num) < 1e300), 0)::float8 AS max_value
FROM approval_requests r
JOIN (SELECT unnest(@rules::text[]) AS rule, unnest(@kinds::text[]) AS kind) g ON g.rule = r.rule AND g.kind = r.action_kind
JOIN decisions d ON d.request_id = r.id AND d.created_at >= @since
CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(r.action->'params') = 'object' THEN r.action->'params' ELSE '{}'::jsonb END) AS p(key, value)
CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(p.value) = 'number' THEN p.value::numeric END AS num) v
WHERE r.created_at >= @since AND r.tier <> 'auto' AND d.verdict = 'approve' AND d.actor NOT LIKE 'policy:%'
GROUP BY r.rule, r.action_kind, p.key
ORDER BY r.rule, r.action_kind, p.key;
