-- +goose Up
-- The inbox's filters by workflow and by rule, each with the inbox's order
-- after them (rank, deadline key, age, id; the expressions of
-- approval_requests_inbox): a filtered first page reads its 50 rows from one
-- of these, walking no row the filter refuses. The inbox lists one rank at a
-- time (store.RequestListInbox), so the rank is an equality here and the
-- tier filter needs no index of its own (ranks 1 and 2 are one tier each).
-- internal/store/sql/inbox_filter.sql names the index each filter uses;
-- TestInboxFilterPlans checks it.
--
-- Each index, and approval_requests_inbox rebuilt the same way, INCLUDEs the
-- columns of the rank (tier, escalated_at) and of "I can decide" (roles,
-- escalate_to, started_by): a tier's count under any filter but "Claimed by
-- me" then reads only the index (an index-only scan, up to the cap of 1,000;
-- "I can decide" adds a probe of approval_votes' primary key per request)
-- instead of a table row per request counted.
DROP INDEX approval_requests_inbox;
CREATE INDEX approval_requests_inbox ON approval_requests
    ((CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
     (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    INCLUDE (tier, escalated_at, roles, escalate_to, started_by)
    WHERE status = 'pending';
CREATE INDEX approval_requests_inbox_workflow ON approval_requests
    (workflow, (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
     (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    INCLUDE (tier, escalated_at, roles, escalate_to, started_by)
    WHERE status = 'pending';
CREATE INDEX approval_requests_inbox_rule ON approval_requests
    (rule, (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
     (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    INCLUDE (tier, escalated_at, roles, escalate_to, started_by)
    WHERE status = 'pending';
CREATE INDEX approval_requests_inbox_workflow_rule ON approval_requests
    (workflow, rule, (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
     (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    INCLUDE (tier, escalated_at, roles, escalate_to, started_by)
    WHERE status = 'pending';

-- Statistics of the rank and deadline key: the planner ignores those of a
-- partial index's expressions, and without these it takes "rank = 1" for a
-- handful of rows and sorts the whole rank rather than walking the index to
-- the page's 50 rows.
CREATE STATISTICS approval_requests_inbox_keys ON
    (CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
    (coalesce(deadline, 'infinity'::timestamptz))
    FROM approval_requests;

-- +goose Down
DROP STATISTICS approval_requests_inbox_keys;
DROP INDEX approval_requests_inbox_workflow_rule;
DROP INDEX approval_requests_inbox_rule;
DROP INDEX approval_requests_inbox_workflow;
DROP INDEX approval_requests_inbox;
CREATE INDEX approval_requests_inbox ON approval_requests
    ((CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
     (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    WHERE status = 'pending';
