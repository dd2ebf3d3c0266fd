-- Ingest: sources (write keys), messageId idempotency, identity stitching, suppressions.

-- A sender of events. Only the SHA-256 of its write key is kept: keys are 256-bit
-- random tokens, so a fast hash is enough and a lookup by hash reveals nothing.
CREATE TABLE sources (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text        NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,99}$'),
    key_hash        bytea       NOT NULL UNIQUE,
    key_hint        text        NOT NULL,
    google_key_hash bytea,
    rate_limit      double precision CHECK (rate_limit > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);

-- messageIds seen per source within the dedupe window; the row is inserted in the
-- same transaction that waits for Kafka's acknowledgement of the event. (The event id
-- is derived from source and messageId, so it is not stored.)
CREATE TABLE ingest_messages (
    source_id   bigint      NOT NULL REFERENCES sources (id),
    message_id  text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_id, message_id)
);
CREATE INDEX ingest_messages_received_at ON ingest_messages (received_at);

-- Anonymous ids linked to a known user by identify (first link wins).
CREATE TABLE identities (
    anonymous_id text        PRIMARY KEY,
    user_id      text        NOT NULL,
    linked_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identities_user_id ON identities (user_id);

-- Who must not be contacted on a channel, and why (checked by delivery at send time).
CREATE TABLE suppressions (
    prospect_id text        NOT NULL,
    channel     text        NOT NULL,
    reason      text        NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prospect_id, channel)
);
