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

-- The chainer inserts the chain rows with the role's rights, so the role
-- keeps INSERT on audit_chain; a chain row it wrote for an event yet to be
-- appended would stall the chain in the same way once that event came.
-- A chain row names an event that exists (one anti-join per chaining
-- statement, on the events' primary key).
-- +goose StatementBegin
CREATE FUNCTION audit_chain_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM linked l WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.id = l.event_id)) THEN
        RAISE EXCEPTION 'audit_chain: a chain row names an event that exists'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_chain_event_exists AFTER INSERT ON audit_chain
    REFERENCING NEW TABLE AS linked FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_guard();

-- +goose Down
DROP TRIGGER audit_chain_event_exists ON audit_chain;
DROP FUNCTION audit_chain_guard;
GRANT INSERT ON audit_unchained TO countersign_app;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_events_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_unchained (event_id) SELECT id FROM appended;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
