-- The inbox's filters over pending approval_requests, shared by the listing
-- (RequestListInbox.sql) and the tier counts (RequestCountInbox.sql) so that
-- the counts always follow the filter. Each condition is off when its
-- argument is empty (or false); the caller sets every argument.
status = 'pending'
AND (@workflow::text = '' OR workflow = @workflow::text)
AND (@rule::text = '' OR rule = @rule::text)
AND (@tier::text = '' OR tier = @tier::text)
AND (@created_before::timestamptz IS NULL OR created_at <= @created_before::timestamptz)
-- "I can decide": the roles approval.AllowedRoles allows (the rule's roles,
-- reviewers and approvers when it names none, the escalation roles once
-- escalated, admins always), not a run the actor started (self-approval is
-- refused), and no approval already given by the actor. "roles = '{}'"
-- rather than cardinality(): the column's statistics then estimate it, and
-- a planner that underestimates the rows passing would sort the whole
-- pending set instead of walking the inbox index to the limit.
AND (NOT @can_decide::boolean OR (
    (@actor_role::text = 'admin'
        OR @actor_role::text = ANY(roles)
        OR (roles = '{}' AND @actor_role::text IN ('reviewer', 'approver'))
        OR (escalated_at IS NOT NULL AND @actor_role::text = ANY(escalate_to)))
    AND started_by <> @actor::text
    AND NOT EXISTS (SELECT 1 FROM approval_votes v WHERE v.request_id = approval_requests.id AND v.actor = @actor::text)))
-- "Claimed by me": the ids of the actor's live claims, read first by the
-- caller (a few; none means no query at all), so that this is a cheap test of
-- the id rather than a subquery per row.
AND (NOT @claimed_by_me::boolean OR id = ANY(@claimed_ids::uuid[]))
