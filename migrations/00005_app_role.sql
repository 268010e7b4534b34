-- +goose Up
-- The role the application should run as in production (a login role that is
-- a member of it): it may do everything the application does, and nothing to
-- past audit events beyond linking them into the chain. It owns nothing, so it
-- cannot disable the append-only trigger either. Roles belong to the server,
-- so another database may have created it already.
-- +goose StatementBegin
DO $$
BEGIN
    CREATE ROLE countersign_app NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
-- +goose StatementEnd
GRANT USAGE ON SCHEMA public TO countersign_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO countersign_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO countersign_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM countersign_app;
GRANT UPDATE (seq, prev_hash, hash) ON audit_events TO countersign_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO countersign_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO countersign_app;

-- +goose Down
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM countersign_app;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM countersign_app;
