-- +goose Up
-- "I can decide" (store.RequestListInbox, sql/inbox_filter.sql) as an index
-- per role that decides: the pending requests that role may decide
-- (approval.AllowedRoles: the rule's roles, reviewers and approvers when it
-- names none, the escalation roles once escalated; admins decide all and
-- use approval_requests_inbox), in the inbox's order. Filtering the inbox
-- index instead reads every request the role may not decide before a page is
-- full: for a reviewer where most rules ask for approvers, nearly the whole
-- pending set. Here the walk stops after a page, and the count reads only
-- rows the role may decide; what remains a filter (not a run the actor
-- started, no approval already given) is per actor and rare.
--
-- The predicates are the filter's condition with the role as a constant,
-- exactly as the planner simplifies the query's (inbox_filter.sql writes the
-- role as a literal for that reason: a parameter could not prove the
-- predicate, and a generic plan would never use these). Roles are a closed
-- set (vocab.Role; the policy refuses others), so an index per role is
-- complete. The row's own columns decide the predicate, so an escalation or
-- a change of roles moves the request in or out of the index in the same
-- update: nothing copied can go stale.
CREATE INDEX approval_requests_inbox_can_reviewer ON approval_requests
    ((CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
     (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    INCLUDE (tier, escalated_at, started_by)
    WHERE status = 'pending'
        AND ('reviewer' = ANY(roles) OR roles = '{}' OR (escalated_at IS NOT NULL AND 'reviewer' = ANY(escalate_to)));
CREATE INDEX approval_requests_inbox_can_approver ON approval_requests
    ((CASE WHEN escalated_at IS NOT NULL THEN 0 WHEN tier = 'explicit' THEN 1 ELSE 2 END),
     (coalesce(deadline, 'infinity'::timestamptz)), created_at, id)
    INCLUDE (tier, escalated_at, started_by)
    WHERE status = 'pending'
        AND ('approver' = ANY(roles) OR roles = '{}' OR (escalated_at IS NOT NULL AND 'approver' = ANY(escalate_to)));

-- "No approval already given" reads the actor's own votes: the primary key
-- (request_id, actor) serves a probe per request, but a hash anti-join over
-- all of an actor's votes (the planner's choice for a count) would otherwise
-- scan the whole key for the actor, every vote ever given by anyone.
CREATE INDEX approval_votes_actor ON approval_votes (actor, request_id);

-- +goose Down
DROP INDEX approval_votes_actor;
DROP INDEX approval_requests_inbox_can_approver;
DROP INDEX approval_requests_inbox_can_reviewer;
