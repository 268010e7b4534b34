-- +goose Up
-- The tamper-evident history. An event is inserted in the transaction of the
-- change it records, with no lock, so appends never serialize the work they
-- record. A single chainer (internal/audit.Chain) then gives committed events
-- their place in the chain, in commit order: seq, prev_hash, and
-- hash = sha256(prev_hash || canonical encoding), so that editing, removing
-- or reordering any chained event breaks every hash after it.
CREATE TABLE audit_events (
    id           bigserial PRIMARY KEY,
    seq          bigint UNIQUE,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor        text NOT NULL,
    kind         text NOT NULL,
    subject_type text NOT NULL,
    subject_id   text NOT NULL,
    run_id       uuid,
    details      jsonb NOT NULL DEFAULT '{}',
    prev_hash    bytea,
    hash         bytea,
    CONSTRAINT audit_events_chained CHECK ((seq IS NULL) = (hash IS NULL) AND (seq IS NULL) = (prev_hash IS NULL))
);
CREATE INDEX audit_events_unchained ON audit_events (id) WHERE seq IS NULL;
CREATE INDEX audit_events_at ON audit_events (at DESC, id DESC);
CREATE INDEX audit_events_run ON audit_events (run_id, id) WHERE run_id IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor, id DESC);
CREATE INDEX audit_events_kind ON audit_events (kind, id DESC);

-- Append-only: the one change allowed is chaining an unchained event, once,
-- leaving everything it records as it was.
-- +goose StatementBegin
CREATE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND NEW.id = OLD.id AND NEW.at = OLD.at AND NEW.actor = OLD.actor AND NEW.kind = OLD.kind
       AND NEW.subject_type = OLD.subject_type AND NEW.subject_id = OLD.subject_id
       AND NEW.run_id IS NOT DISTINCT FROM OLD.run_id AND NEW.details = OLD.details THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_guard();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_guard();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;

-- +goose Down
DROP TABLE audit_events;
DROP FUNCTION audit_events_guard;
