-- What a send step did (sent, deferred or skipped, by which policy, until when) and why
-- a run exited: the prospect's history shows every send a policy held back.
ALTER TABLE journey_history
    ADD COLUMN send_outcome   text,
    ADD COLUMN held_by        text,
    ADD COLUMN deferred_until timestamptz,
    ADD COLUMN exit_reason    text;
