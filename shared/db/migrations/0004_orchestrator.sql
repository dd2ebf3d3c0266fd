-- Orchestrator: per-prospect state, durable timers, step history, touchpoint timeline.

-- The engine's state of one prospect (traits, facts, runs), as JSON.
CREATE TABLE prospect_state (
    prospect_id text        PRIMARY KEY,
    state       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Durable timers: claimed when due with FOR UPDATE SKIP LOCKED, turned into timers.fired
-- messages through the outbox in the same transaction that deletes them.
CREATE TABLE timers (
    timer_id        uuid        PRIMARY KEY,
    prospect_id     text        NOT NULL,
    run_id          uuid        NOT NULL,
    journey         text        NOT NULL,
    journey_version int         NOT NULL,
    step            text        NOT NULL,
    due_at          timestamptz NOT NULL,
    payload         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX timers_due_at ON timers (due_at);

-- Every stage and step transition, with when it happened: the funnel is computed from it.
CREATE TABLE journey_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    prospect_id     text        NOT NULL,
    journey         text        NOT NULL,
    journey_version int         NOT NULL,
    persona         text        NOT NULL,
    run_id          uuid        NOT NULL,
    reason          text        NOT NULL,
    from_stage      text,
    to_stage        text,
    step            text,
    variant         text,
    cause_event_id  uuid,
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX journey_history_journey ON journey_history (journey, occurred_at);
CREATE INDEX journey_history_prospect ON journey_history (prospect_id, occurred_at);

-- What happened to each prospect, in order (touchpoints, delivery outcomes, timers).
CREATE TABLE prospect_timeline (
    event_id    uuid        PRIMARY KEY,
    prospect_id text        NOT NULL,
    kind        text        NOT NULL,
    type        text,
    name        text,
    channel     text,
    occurred_at timestamptz NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX prospect_timeline_prospect ON prospect_timeline (prospect_id, occurred_at);
