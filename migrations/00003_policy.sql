-- +goose Up
-- Policy versions. Exactly one is active (the partial unique index); activating
-- one is an audited act recorded in the same transaction.
CREATE TABLE policies (
    version      serial PRIMARY KEY,
    source       text NOT NULL,
    sha256       text NOT NULL,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    active       boolean NOT NULL DEFAULT false,
    activated_by text,
    activated_at timestamptz
);
CREATE UNIQUE INDEX policies_one_active ON policies (active) WHERE active;

-- +goose Down
DROP TABLE policies;
