-- The funnel and the journey map follow each run through its history rows.
CREATE INDEX journey_history_run ON journey_history (run_id, id);
