-- Claiming around a paced channel's backlog: while one channel has enough messages
-- waiting for its pace, delivery claims the others' due rows channel by channel, each
-- through this index, instead of walking the whole due queue past the backlog.
CREATE INDEX deliveries_due_by_channel ON deliveries (channel, next_attempt_at)
    WHERE status = 'pending';
