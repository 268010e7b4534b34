-- +goose Up
-- Notifications to people (internal/notice): an outbox written in the
-- transaction of the event that causes it, fanned out by a River job into one
-- delivery per (event, recipient, channel), and sent as messages, each of
-- which carries one delivery or a digest of several.

-- notice_events is the outbox. The recipients are decided when the event is
-- written (roles that may act, named users, subscribers), so that the fan-out
-- needs no policy knowledge.
CREATE TABLE notice_events (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    request_id  uuid,
    run_id      uuid,
    batch_id    uuid,
    roles       text[] NOT NULL DEFAULT '{}',
    user_ids    bigint[] NOT NULL DEFAULT '{}',
    subscribers boolean NOT NULL DEFAULT false,
    urgent      boolean NOT NULL DEFAULT false,
    detail      text NOT NULL DEFAULT '' CHECK (length(detail) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One message goes to one recipient on one channel: a single delivery or a
-- digest. Attempts are counted here and recorded one by one below.
CREATE TABLE notice_messages (
    id         bigserial PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel    text NOT NULL,
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    digest     boolean NOT NULL DEFAULT false,
    attempts   integer NOT NULL DEFAULT 0,
    last_error text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX notice_messages_created ON notice_messages (created_at DESC, id DESC);
CREATE INDEX notice_messages_failed ON notice_messages (created_at DESC) WHERE status = 'failed';

-- At most one delivery per (event, recipient, channel): a fan-out that runs
-- twice inserts nothing the second time.
CREATE TABLE notice_deliveries (
    id          bigserial PRIMARY KEY,
    event_id    bigint NOT NULL REFERENCES notice_events (id) ON DELETE CASCADE,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel     text NOT NULL,
    not_before  timestamptz NOT NULL,
    message_id  bigint REFERENCES notice_messages (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, user_id, channel)
);
CREATE INDEX notice_deliveries_waiting ON notice_deliveries (user_id, channel, not_before) WHERE message_id IS NULL;
CREATE INDEX notice_deliveries_message ON notice_deliveries (message_id);

-- An outlet is one recipient's channel: when it last sent and when its next
-- flush is scheduled (NULL: none is), which is what coalesces a burst.
CREATE TABLE notice_outlets (
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel      text NOT NULL,
    last_sent_at timestamptz,
    flush_at     timestamptz,
    PRIMARY KEY (user_id, channel)
);

CREATE TABLE notice_attempts (
    id         bigserial PRIMARY KEY,
    message_id bigint NOT NULL REFERENCES notice_messages (id) ON DELETE CASCADE,
    attempt    integer NOT NULL,
    ok         boolean NOT NULL,
    error      text NOT NULL DEFAULT '' CHECK (length(error) <= 2000),
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notice_attempts_message ON notice_attempts (message_id, attempt);

-- Preferences: a user's own row, or else the defaults of the user's role.
-- Quiet hours are minutes after midnight in time_zone; start = end means none.
CREATE TABLE notice_preferences (
    user_id     bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    channels    text[] NOT NULL,
    events      text[] NOT NULL,
    quiet_start integer NOT NULL DEFAULT 0 CHECK (quiet_start BETWEEN 0 AND 1439),
    quiet_end   integer NOT NULL DEFAULT 0 CHECK (quiet_end BETWEEN 0 AND 1439),
    time_zone   text NOT NULL DEFAULT 'UTC' CHECK (length(time_zone) <= 64),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notice_role_defaults (
    role        text PRIMARY KEY CHECK (role IN ('viewer', 'reviewer', 'approver', 'admin')),
    channels    text[] NOT NULL,
    events      text[] NOT NULL,
    quiet_start integer NOT NULL DEFAULT 0 CHECK (quiet_start BETWEEN 0 AND 1439),
    quiet_end   integer NOT NULL DEFAULT 0 CHECK (quiet_end BETWEEN 0 AND 1439),
    time_zone   text NOT NULL DEFAULT 'UTC' CHECK (length(time_zone) <= 64),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE notice_role_defaults;
DROP TABLE notice_preferences;
DROP TABLE notice_attempts;
DROP TABLE notice_outlets;
DROP TABLE notice_deliveries;
DROP TABLE notice_messages;
DROP TABLE notice_events;
