-- The metrics service's counters and histograms, kept in PostgreSQL so that a restart
-- continues every series where it was (no counter reset) and a redelivered message is
-- not counted twice: the offsets counted so far are updated in the same transaction.
CREATE TABLE metric_counters (
    name   text             NOT NULL,
    labels jsonb            NOT NULL,
    value  double precision NOT NULL,
    PRIMARY KEY (name, labels)
);

-- buckets: non-cumulative counts per bucket of the series' fixed bounds, +Inf last.
CREATE TABLE metric_histograms (
    name    text             NOT NULL,
    labels  jsonb            NOT NULL,
    buckets bigint[]         NOT NULL,
    sum     double precision NOT NULL,
    count   bigint           NOT NULL,
    PRIMARY KEY (name, labels)
);

-- The next offset to count, per consumer and partition.
CREATE TABLE metric_offsets (
    consumer    text   NOT NULL,
    topic       text   NOT NULL,
    partition   int    NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);
