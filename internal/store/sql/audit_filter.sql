-- The conditions of an audit search (AuditFilter), shared by the listing and
-- the summary. Each applies only when given: an empty text or a NULL matches
-- all. When the results are redacted, a search by actor leaves out the
-- redacted kinds, or it would tell which emails were typed. hidden_kinds
-- (maybe empty) are left out: the history page hides sign-ins by default.
    (@actor::text = '' OR actor = @actor::text)
    AND (NOT @redact_actor::boolean OR kind <> ALL(@redacted_kinds::text[]))
    AND (@kind::text = '' OR kind = @kind::text)
    AND kind <> ALL(@hidden_kinds::text[])
    AND (@verdict::text = '' OR details->>'verdict' = @verdict::text)
    AND (@workflow::text = '' OR details->>'workflow' = @workflow::text)
    AND (@rule::text = '' OR details->>'rule' = @rule::text)
    AND (@tier::text = '' OR details->>'tier' = @tier::text)
    AND (@run_id::uuid IS NULL OR run_id = @run_id::uuid)
    AND (@since::timestamptz IS NULL OR at >= @since::timestamptz)
    AND (@until::timestamptz IS NULL OR at < @until::timestamptz)
