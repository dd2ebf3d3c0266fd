-- Timers name their journey and step by the ids of the journey format (slugs: letters,
-- digits, '_', '-', '.'): the timer claim writes them into the TimerFired JSON as they
-- are, without escaping, so any other character is refused here.
ALTER TABLE timers
    ADD CONSTRAINT timers_journey_slug CHECK (journey ~ '^[a-z0-9][a-z0-9_-]*$'),
    ADD CONSTRAINT timers_step_slug CHECK (step ~ '^[a-z0-9][a-z0-9_.-]*$');
