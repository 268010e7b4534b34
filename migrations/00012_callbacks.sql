-- +goose Up
-- Every API token gets a callback secret: the HMAC key that signs the
-- callbacks its approvals cause, so that a receiver can tell them from
-- forgeries. New tokens get one from the application (crypto/rand), shown
-- once with the token. Tokens made before this migration get one here, from
-- gen_random_uuid (PostgreSQL's strong random source; two version-4 uuids
-- give 244 random bits, without needing pgcrypto); since nobody has seen
-- those, callbacks for such a token are signed with a key its owner cannot
-- know: make a new token to receive verifiable callbacks.
ALTER TABLE api_tokens ADD COLUMN callback_secret bytea;
UPDATE api_tokens SET callback_secret = decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex');
ALTER TABLE api_tokens ALTER COLUMN callback_secret SET NOT NULL,
    ADD CONSTRAINT api_tokens_callback_secret_len CHECK (octet_length(callback_secret) = 32);

-- The outbox: a delivery is written in the transaction that causes it (with
-- the River job that sends it), so a rolled-back cause sends nothing. body is
-- bytea because the signature covers the exact bytes sent.
CREATE TABLE callback_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject          text NOT NULL CHECK (subject <> ''),
    event            text NOT NULL CHECK (event <> ''),
    -- The token whose callback secret signs the body; NULL sends it unsigned.
    token_id         text REFERENCES api_tokens (public_id),
    url              text NOT NULL,
    body             bytea NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    last_status_code integer,
    last_error       text,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX callback_deliveries_subject ON callback_deliveries (subject, id);
CREATE INDEX callback_deliveries_created ON callback_deliveries (created_at DESC, id DESC);
CREATE INDEX callback_deliveries_failed ON callback_deliveries (created_at DESC, id DESC) WHERE status = 'failed';

-- Every attempt to send a delivery, in order.
CREATE TABLE callback_attempts (
    delivery_id bigint NOT NULL REFERENCES callback_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    status_code integer,
    error       text,
    duration_us bigint NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- +goose Down
DROP TABLE callback_attempts;
DROP TABLE callback_deliveries;
ALTER TABLE api_tokens DROP COLUMN callback_secret;
