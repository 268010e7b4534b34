-- +goose Up
-- Webhook subscriptions: notification events of the chosen kinds are POSTed
-- to a URL an admin gave, through the callback outbox (signed, SSRF-checked,
-- retried, every attempt recorded). The secret signs the subscription's
-- deliveries; it is shown once, when the subscription is made.
CREATE TABLE webhooks (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url        text NOT NULL CHECK (url <> '' AND length(url) <= 2048),
    events     text[] NOT NULL CHECK (cardinality(events) > 0),
    secret     bytea NOT NULL CHECK (octet_length(secret) = 32),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A webhook's deliveries are signed with its secret. Deleting a subscription
-- deletes its deliveries, so that nothing more goes to a URL nobody wants
-- called. One delivery per (subscription, subject): a fan-out that runs twice
-- sends an event once.
ALTER TABLE callback_deliveries ADD COLUMN webhook_id bigint REFERENCES webhooks (id) ON DELETE CASCADE;
CREATE UNIQUE INDEX callback_deliveries_webhook ON callback_deliveries (webhook_id, subject) WHERE webhook_id IS NOT NULL;

-- Every Slack message posted through the bot token that carries decision
-- buttons, with the requests it shows and its blocks as posted, so that a
-- decision (from Slack or anywhere) can update every copy (chat.update).
CREATE TABLE slack_messages (
    channel     text NOT NULL,
    ts          text NOT NULL,
    request_ids uuid[] NOT NULL,
    blocks      jsonb NOT NULL,
    text        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, ts)
);
CREATE INDEX slack_messages_requests ON slack_messages USING gin (request_ids);

-- +goose Down
DROP TABLE slack_messages;
DROP INDEX callback_deliveries_webhook;
ALTER TABLE callback_deliveries DROP COLUMN webhook_id;
DROP TABLE webhooks;
