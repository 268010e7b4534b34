-- +goose Up
-- The tamper-evident history. Each row's hash covers the previous row's hash
-- and a canonical encoding of the row (audit_canonical), so editing, removing
-- or reordering any past row breaks every hash after it.
CREATE TABLE audit_events (
    seq          bigint PRIMARY KEY,
    at           timestamptz NOT NULL,
    actor        text NOT NULL,
    kind         text NOT NULL,
    subject_type text NOT NULL,
    subject_id   text NOT NULL,
    run_id       uuid,
    details      jsonb NOT NULL DEFAULT '{}',
    prev_hash    bytea NOT NULL,
    hash         bytea NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at DESC, seq DESC);
CREATE INDEX audit_events_run ON audit_events (run_id, seq) WHERE run_id IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor, seq DESC);
CREATE INDEX audit_events_kind ON audit_events (kind, seq DESC);

-- The canonical encoding, mirrored by internal/audit.Canonical: every field
-- length-prefixed so that no two events encode alike.
-- +goose StatementBegin
CREATE FUNCTION audit_canonical(p_seq bigint, p_at timestamptz, p_actor text, p_kind text,
                                p_subject_type text, p_subject_id text, p_run_id uuid, p_details jsonb)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws('|', 'v1', p_seq::text,
        ((extract(epoch FROM p_at) * 1000000)::bigint)::text,
        octet_length(p_actor) || ':' || p_actor,
        octet_length(p_kind) || ':' || p_kind,
        octet_length(p_subject_type) || ':' || p_subject_type,
        octet_length(p_subject_id) || ':' || p_subject_id,
        octet_length(coalesce(p_run_id::text, '')) || ':' || coalesce(p_run_id::text, ''),
        octet_length(p_details::text) || ':' || p_details::text)
$$;
-- +goose StatementEnd

-- Appends are serialized by a transaction-scoped advisory lock, so the chain
-- never forks; the lock is held until the caller's transaction ends, which is
-- what keeps the event in the same transaction as the change it records.
-- +goose StatementBegin
CREATE FUNCTION audit_append(p_actor text, p_kind text, p_subject_type text, p_subject_id text,
                             p_run_id uuid, p_details jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_seq  bigint;
    v_prev bytea;
    v_at   timestamptz := date_trunc('microseconds', clock_timestamp());
BEGIN
    PERFORM pg_advisory_xact_lock(7243100);
    SELECT seq, hash INTO v_seq, v_prev FROM audit_events ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        v_seq := 0;
        v_prev := decode(repeat('00', 32), 'hex');
    END IF;
    v_seq := v_seq + 1;
    INSERT INTO audit_events (seq, at, actor, kind, subject_type, subject_id, run_id, details, prev_hash, hash)
    VALUES (v_seq, v_at, p_actor, p_kind, p_subject_type, p_subject_id, p_run_id, p_details, v_prev,
            sha256(v_prev || convert_to(audit_canonical(v_seq, v_at, p_actor, p_kind, p_subject_type,
                                                         p_subject_id, p_run_id, p_details), 'UTF8')));
    RETURN v_seq;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM PUBLIC;

-- +goose Down
DROP TABLE audit_events;
DROP FUNCTION audit_append, audit_canonical, audit_events_refuse_change;
