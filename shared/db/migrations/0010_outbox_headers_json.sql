-- Outbox headers as json (text, checked on input) instead of jsonb (parsed into a binary
-- form): they are only ever written once and read back whole by the relay, and building
-- jsonb was a large part of writing an outbox row.
ALTER TABLE outbox ALTER COLUMN headers TYPE json USING headers::json,
                   ALTER COLUMN headers SET DEFAULT '{}'::json;
