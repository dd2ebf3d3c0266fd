-- A prospect's pending timers (GET /v1/prospects/{id}, export, erasure) without a scan
-- of every pending timer. The claim deletes rows and so adds no work to this index.
CREATE INDEX timers_prospect ON timers (prospect_id);
