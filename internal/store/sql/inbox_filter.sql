-- The inbox's filters over pending approval_requests, shared by the listing
-- (RequestListInbox.sql) and the tier counts (RequestCountInbox.sql) so that
-- the counts always follow the filter. Each "-- when <filter>" block is kept
-- only while that filter is set (store/inbox.go, inboxFilter), so that every
-- combination is a statement of its own whose conditions are all plain
-- equalities and ranges: a prepared statement's generic plan then seeks the
-- filter's index as a custom plan does, which a "@x = '' OR col = @x" switch
-- would prevent. The listing reads one rank at a time (k.rank = @rank), so
-- that each index below gives the page's order after its equalities.
--
-- The index each combination's first page walks (TestInboxFilterPlans
-- reads this table and checks it; "can" is "I can decide" for a reviewer or
-- an approver, an admin's "can" walks what the same filters without it do):
--   no filter, tier                        approval_requests_inbox
--   can (with tier, age), by the role:     approval_requests_inbox_can_reviewer
--                                          approval_requests_inbox_can_approver
--   workflow (with any of tier, age, can)  approval_requests_inbox_workflow
--   rule (with any of tier, age, can)      approval_requests_inbox_rule
--   workflow and rule                      approval_requests_inbox_workflow_rule
--   age (alone or with the above): that index when many requests are that
--     old, approval_requests_status (status, created_at) or
--     approval_requests_recent (tier, created_at) or approval_requests_waiting
--     (tier, created_at over pending requests; migration 24) when few are, then a sort
--     of those few; the planner weighs them on the column's statistics
--   "Claimed by me" (with anything): approval_requests_pkey on the ids of
--     the actor's claims (at most 500), then a sort of those
-- The tier counts (RequestCountInbox.sql) use the same index, as index-only
-- scans, but for "Claimed by me". With a workflow or a rule, "can" is a
-- filter on that index: a workflow or rule is the narrower, and an index per
-- role and workflow would multiply the indexes for little.
-- Tier needs no index: ranks 1 and 2 are one tier each, and the listing
-- skips the other tier's rank; the condition sorts out rank 0 (escalated).
status = 'pending'
-- when workflow
AND workflow = @workflow::text
-- when rule
AND rule = @rule::text
-- when tier
AND tier = @tier::text
-- when age
AND created_at <= @created_before::timestamptz
-- when can
-- "I can decide": the roles approval.AllowedRoles allows (the rule's roles,
-- reviewers and approvers when it names none, the escalation roles once
-- escalated, admins always), not a run the actor started (self-approval is
-- refused), and no approval already given by the actor. 'ACTOR_ROLE' is the
-- actor's role written as a constant (store/inbox.go, roleLiteral: one of
-- the closed set vocab.Role, never user text), not a parameter: the planner
-- folds the condition to exactly the predicate of that role's index,
-- approval_requests_inbox_can_reviewer or _approver (migration 00034), which
-- holds only the requests the role may decide, in inbox order, so the walk
-- stops after a page; an admin's folds to true (approval_requests_inbox). A
-- parameter could not prove the predicate, under a generic plan least of all.
-- "roles = '{}'" rather than cardinality(): the same text as the index's
-- predicate. A role that decides nothing (viewers) never gets here: the
-- caller answers "none". The vote is probed by the primary key or read from
-- the actor's own votes (approval_votes_actor), never all votes.
AND ('ACTOR_ROLE'::text = 'admin'
    OR 'ACTOR_ROLE'::text = ANY(roles)
    OR (roles = '{}' AND 'ACTOR_ROLE'::text IN ('reviewer', 'approver'))
    OR (escalated_at IS NOT NULL AND 'ACTOR_ROLE'::text = ANY(escalate_to)))
AND started_by <> @actor::text
AND NOT EXISTS (SELECT 1 FROM approval_votes v WHERE v.request_id = approval_requests.id AND v.actor = @actor::text)
-- when claimed
-- "Claimed by me": the ids of the actor's live claims, read first by the
-- caller (a few; none means no query at all), so that this is a cheap test of
-- the id rather than a subquery per row.
AND id = ANY(@claimed_ids::uuid[])
