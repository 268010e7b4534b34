-- +goose Up
-- The chain moves out of the event row. Chaining used to UPDATE each event
-- (seq, prev_hash, hash): a non-HOT update, since the unique index on seq and
-- the partial index of unchained events cover those columns, so every chained
-- event was written twice in full and entered every one of its seven indexes
-- twice. Now an event row is written once and never changed:
--   * audit_unchained: the ids of committed events not chained yet, filled by
--     a statement trigger on audit_events (every insert path, one call per
--     statement) and emptied by the chainer in the statement that chains them;
--   * audit_chain: one narrow, insert-only row per chained event (seq,
--     event id, prev_hash, hash), with the hash computed exactly as before.
-- docs/ARCHITECTURE.md ("Audit chain") and docs/BENCHMARKS.md ("Resume
-- latency and audit chaining") have the reasons and the measurements.
CREATE TABLE audit_chain (
    seq       bigint PRIMARY KEY,
    event_id  bigint NOT NULL UNIQUE,
    prev_hash bytea NOT NULL,
    hash      bytea NOT NULL
);
CREATE TABLE audit_unchained (
    event_id bigint PRIMARY KEY
);

INSERT INTO audit_chain (seq, event_id, prev_hash, hash)
SELECT seq, id, prev_hash, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq;
INSERT INTO audit_unchained (event_id) SELECT id FROM audit_events WHERE seq IS NULL;

-- +goose StatementBegin
CREATE FUNCTION audit_events_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_unchained (event_id) SELECT id FROM appended;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_queue AFTER INSERT ON audit_events
    REFERENCING NEW TABLE AS appended FOR EACH STATEMENT EXECUTE FUNCTION audit_events_queue();

-- An event leaves the queue only once it is on the chain: deleting a queue
-- row otherwise would keep an event off the chain for ever, unnoticed.
-- +goose StatementBegin
CREATE FUNCTION audit_unchained_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM taken t WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_id = t.event_id)) THEN
        RAISE EXCEPTION 'audit_unchained: an event leaves the queue only when it is chained'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_unchained_chained AFTER DELETE ON audit_unchained
    REFERENCING OLD TABLE AS taken FOR EACH STATEMENT EXECUTE FUNCTION audit_unchained_guard();

-- Events are never changed now; the chain is append-only as they are.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_chained;
ALTER TABLE audit_events DROP COLUMN seq, DROP COLUMN prev_hash, DROP COLUMN hash;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_chain_no_change BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_events_guard();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_guard();
CREATE TRIGGER audit_unchained_no_truncate BEFORE TRUNCATE ON audit_unchained
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_guard();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_chain FROM PUBLIC;
REVOKE UPDATE, TRUNCATE ON audit_unchained FROM PUBLIC;
-- countersign_app (migration 00005) got every right on new tables by default.
REVOKE UPDATE, DELETE, TRUNCATE ON audit_chain FROM countersign_app;
REVOKE UPDATE, TRUNCATE ON audit_unchained FROM countersign_app;

-- +goose Down
DROP TRIGGER audit_chain_no_change ON audit_chain;
DROP TRIGGER audit_chain_no_truncate ON audit_chain;
DROP TRIGGER audit_events_queue ON audit_events;
DROP FUNCTION audit_events_queue;
ALTER TABLE audit_events ADD COLUMN seq bigint UNIQUE, ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;
ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change;
UPDATE audit_events e SET seq = c.seq, prev_hash = c.prev_hash, hash = c.hash FROM audit_chain c WHERE c.event_id = e.id;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_chained
    CHECK ((seq IS NULL) = (hash IS NULL) AND (seq IS NULL) = (prev_hash IS NULL));
CREATE INDEX audit_events_unchained ON audit_events (id) WHERE seq IS NULL;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
GRANT UPDATE (seq, prev_hash, hash) ON audit_events TO countersign_app;
DROP TABLE audit_unchained, audit_chain;
DROP FUNCTION audit_unchained_guard;
