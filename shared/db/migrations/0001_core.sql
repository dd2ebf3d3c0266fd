-- Core tables of the orchestrator's commit protocol: consume a batch, then in one
-- transaction dedupe event ids, update state and write outbox rows; publish afterwards.

-- Events already applied, per consumer: a redelivered event is a no-op.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Messages written in the same transaction as the state they follow from, published
-- afterwards; a relay republishes rows a crash left unpublished.
CREATE TABLE outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic        text        NOT NULL,
    key          bytea       NOT NULL,
    value        bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
