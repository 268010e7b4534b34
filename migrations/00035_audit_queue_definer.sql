-- +goose Up
-- Only the append trigger puts events on the chainers' queue (migration 31).
-- The application role could insert queue rows itself: a row naming an event
-- already chained, or one not yet appended, makes every chaining pass fail on
-- audit_chain's unique event id (the pass takes the queue in id order), and
-- with it every decision, whose transaction chains last (approval.Decide,
-- audit.ChainIfFree); the guard refuses to take such a row off the queue. The
-- trigger now inserts with its owner's rights, and the role has none.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_events_queue() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO audit_unchained (event_id) SELECT id FROM appended;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION audit_events_queue() FROM PUBLIC;
REVOKE INSERT ON audit_unchained FROM PUBLIC;
REVOKE INSERT ON audit_unchained FROM countersign_app;

-- +goose Down
GRANT INSERT ON audit_unchained TO countersign_app;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_events_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_unchained (event_id) SELECT id FROM appended;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
