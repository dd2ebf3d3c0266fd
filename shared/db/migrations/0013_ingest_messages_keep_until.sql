-- Tracking-link events that count once (video milestones, webinar registration and
-- attendance, one-click unsubscribe and rating) are claimed by a deterministic
-- messageId. The claim must outlive the dedupe window for as long as a link can replay
-- it: keep_until is the latest expiry of the links that used it (NULL for every other
-- messageId, which is forgotten after TRAYECTO_INGEST_DEDUPE_DAYS).
ALTER TABLE ingest_messages ADD COLUMN keep_until timestamptz;

-- Claims made before this column existed: their links were signed at most the default
-- TRAYECTO_TRACKING_TTL_DAYS (180) before the claim, so they expire before this.
UPDATE ingest_messages
SET keep_until = received_at + interval '180 days'
WHERE source_id = (SELECT id FROM sources WHERE name = 'tracking')
  AND message_id ~ '^(video|webinar_registered|webinar_attended|unsub|feedback):[0-9a-f]{32}$';

-- The cleanup's two cases, each by its own index: plain messageIds by age, kept ones
-- by their end (so the hourly cleanup does not rescan months of kept claims).
DROP INDEX ingest_messages_received_at;
CREATE INDEX ingest_messages_received_at ON ingest_messages (received_at) WHERE keep_until IS NULL;
CREATE INDEX ingest_messages_keep_until ON ingest_messages (keep_until) WHERE keep_until IS NOT NULL;
