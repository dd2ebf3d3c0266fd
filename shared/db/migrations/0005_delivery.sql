-- Delivery: one row per command id, written before any hand-off; attempts and outcomes.

CREATE TABLE deliveries (
    command_id      uuid        PRIMARY KEY,
    prospect_id     text        NOT NULL,
    command         jsonb       NOT NULL,
    channel         text        NOT NULL,
    content         text        NOT NULL,
    -- pending: to send (again) at next_attempt_at; sending: claimed, not handed off yet;
    -- handing_off: the SMTP DATA (or webhook POST) is under way: never retried;
    -- then one final state.
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN (
                        'pending', 'sending', 'handing_off', 'sent', 'skipped', 'failed',
                        'bounced', 'dead', 'in_doubt')),
    attempts        int         NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_claimed ON deliveries (claimed_at) WHERE status IN ('sending', 'handing_off');
