-- +goose Up
-- What a decision owes the Slack copies of its request: one row per message
-- that shows the request, written in the decision's transaction together with
-- its slack_update job (whatever decided: the console, a batch, the API, MCP,
-- Slack, a deadline), and marked done once chat.update succeeded or Slack
-- said the message can no longer be updated. A request is decided once, so
-- (request, message) is unique: a second write adds nothing, and a copy is
-- updated once per decision however often the job runs.
CREATE TABLE slack_updates (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id uuid NOT NULL,
    channel    text NOT NULL,
    ts         text NOT NULL,
    outcome    text NOT NULL CHECK (length(outcome) <= 500),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at    timestamptz,
    FOREIGN KEY (channel, ts) REFERENCES slack_messages (channel, ts) ON DELETE CASCADE,
    UNIQUE (request_id, channel, ts)
);
CREATE INDEX slack_updates_pending ON slack_updates (request_id) WHERE done_at IS NULL;

-- +goose Down
DROP TABLE slack_updates;
