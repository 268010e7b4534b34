-- AuditSummarize: the decisions among the filtered events, per verdict, and
-- in the rollup row (verdict NULL) the total, how many the policy made and
-- the median time a human took. The filter is audit_filter.sql.
SELECT details->>'verdict' AS verdict, count(*)::int AS decisions,
    (count(*) FILTER (WHERE kind = 'decision.auto'))::int AS automatic,
    coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY (details->>'seconds_to_decision')::float8)
        FILTER (WHERE kind = 'decision.recorded'), 0) AS median
FROM audit_events
WHERE kind IN ('decision.recorded', 'decision.auto') AND /* filter */
GROUP BY ROLLUP (details->>'verdict')
