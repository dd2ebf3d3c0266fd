"""The funnel's SQL over ``journey_history``: see :mod:`services.metrics.funnel`.

Names sort bytewise (``COLLATE "C"``): the same order on every server.

Parameters of every query: $1 journey, $2 persona, $3 version, $4 since, $5 until (each
NULL for "any"), $6 the default stage names (for a journey whose definition is gone).
"""

from __future__ import annotations

from typing import Final

_CTES: Final = """
WITH cohort AS (
    SELECT DISTINCT ON (run_id) run_id, journey, persona, journey_version AS version
    FROM journey_history
    WHERE reason = 'entered'
      AND ($1::text IS NULL OR journey = $1)
      AND ($2::text IS NULL OR persona = $2)
      AND ($3::int IS NULL OR journey_version = $3)
      AND ($4::timestamptz IS NULL OR occurred_at >= $4)
      AND ($5::timestamptz IS NULL OR occurred_at < $5)
    ORDER BY run_id, occurred_at, id
),
groups AS (
    SELECT journey, persona, max(version) AS version,
           array_agg(DISTINCT version ORDER BY version) AS versions, count(*) AS runs
    FROM cohort
    GROUP BY journey, persona
),
-- One row per stay in a stage (the row that moved the run there) and one per exit, each
-- with the run's next such row: how and when the stay ended. Rows of one input share
-- occurred_at, so the id (insertion order) breaks ties.
moves AS (
    SELECT c.journey, c.persona, c.version, h.run_id, h.reason, h.to_stage AS stage,
           h.occurred_at, h.id,
           lead(h.reason) OVER run AS next_reason,
           lead(h.to_stage) OVER run AS next_stage,
           lead(h.occurred_at) OVER run AS left_at,
           bool_or(h.reason = 'exited') OVER (PARTITION BY h.run_id) AS run_exited
    FROM journey_history h
    JOIN cohort c USING (run_id)
    WHERE h.reason IN ('entered', 'advanced', 'goal', 'exited')
      AND ($1::text IS NULL OR h.journey = $1)
    WINDOW run AS (PARTITION BY h.run_id ORDER BY h.occurred_at, h.id)
),
-- Stage order: the latest version in the cohort, then stages only history knows (from
-- other versions) by name; "last": the last stage of that latest version.
defined AS (
    SELECT g.journey, g.persona, s.stage, s.ord,
           count(*) OVER (PARTITION BY g.journey, g.persona) AS total
    FROM groups g
    LEFT JOIN journey_versions v ON v.journey = g.journey AND v.version = g.version
    CROSS JOIN LATERAL jsonb_array_elements_text(
        coalesce(v.definition -> 'stages', to_jsonb($6::text[]))
    ) WITH ORDINALITY AS s(stage, ord)
),
stages AS (
    SELECT journey, persona, stage, ord, ord = total AS last FROM defined
    UNION ALL
    SELECT x.journey, x.persona, x.stage,
           t.total + row_number() OVER (
               PARTITION BY x.journey, x.persona ORDER BY x.stage COLLATE "C"
           ),
           false
    FROM (SELECT DISTINCT journey, persona, stage FROM moves WHERE stage IS NOT NULL) x
    JOIN (SELECT DISTINCT journey, persona, total FROM defined) t USING (journey, persona)
    WHERE NOT EXISTS (
        SELECT 1 FROM defined d
        WHERE d.journey = x.journey AND d.persona = x.persona AND d.stage = x.stage
    )
)
"""

STAGES: Final = (
    _CTES
    + """,
-- The last stage of each version in the cohort: a run exiting there completed it.
finals AS (
    SELECT journey, version, definition -> 'stages' ->> -1 AS stage
    FROM journey_versions
    WHERE (journey, version) IN (SELECT journey, version FROM cohort)
),
stays AS (
    SELECT m.run_id, m.journey, m.persona, m.stage, m.next_reason, m.run_exited,
           coalesce(m.stage = f.stage, s.last) AS last,
           m.left_at IS NULL AS latest, n.ord > s.ord AS forward,
           extract(epoch FROM m.left_at - m.occurred_at)::float8 AS seconds
    FROM moves m
    JOIN stages s USING (journey, persona, stage)
    LEFT JOIN stages n
        ON n.journey = m.journey AND n.persona = m.persona AND n.stage = m.next_stage
    LEFT JOIN finals f ON f.journey = m.journey AND f.version = m.version
    WHERE m.reason <> 'exited'
),
stats AS (
    SELECT journey, persona, stage,
           count(DISTINCT run_id) AS entered,
           count(DISTINCT run_id) FILTER (WHERE latest AND NOT run_exited) AS current,
           count(DISTINCT run_id) FILTER (WHERE forward) AS converted,
           count(DISTINCT run_id) FILTER (WHERE next_reason = 'exited' AND NOT last) AS dropped,
           count(DISTINCT run_id) FILTER (WHERE next_reason = 'exited' AND last) AS completed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS median_seconds,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90_seconds
    FROM stays
    GROUP BY journey, persona, stage
)
SELECT s.journey, s.persona, g.version, g.versions, g.runs, s.stage,
       coalesce(t.entered, 0) AS entered,
       coalesce(t.current, 0) AS current,
       coalesce(t.converted, 0) AS converted,
       coalesce(t.dropped, 0) AS dropped,
       coalesce(t.completed, 0) AS completed,
       t.converted::float8 / nullif(t.entered, 0) AS conversion_rate,
       t.median_seconds, t.p90_seconds
FROM stages s
JOIN groups g USING (journey, persona)
LEFT JOIN stats t USING (journey, persona, stage)
ORDER BY s.journey COLLATE "C", s.persona COLLATE "C", s.ord
"""
)
"""One row per (journey, persona, stage), in stage order."""

VARIANTS: Final = (
    _CTES
    + """,
-- A run's variant at a step: the first time it entered the step with one.
assignments AS (
    SELECT DISTINCT ON (h.run_id, h.step)
           c.journey, c.persona, h.run_id, h.step, h.variant, h.occurred_at, h.id
    FROM journey_history h
    JOIN cohort c USING (run_id)
    WHERE h.reason = 'step' AND h.variant IS NOT NULL
      AND ($1::text IS NULL OR h.journey = $1)
    ORDER BY h.run_id, h.step, h.occurred_at, h.id
),
arms AS (
    SELECT journey, persona, step, variant, count(*) AS assigned
    FROM assignments
    GROUP BY journey, persona, step, variant
),
reached AS (
    SELECT a.journey, a.persona, a.step, a.variant, m.stage,
           count(DISTINCT a.run_id) AS entered
    FROM assignments a
    JOIN moves m
        ON m.run_id = a.run_id AND m.reason <> 'exited'
       AND (m.occurred_at, m.id) > (a.occurred_at, a.id)
    GROUP BY a.journey, a.persona, a.step, a.variant, m.stage
)
SELECT r.journey, r.persona, r.step, r.variant, r.assigned, s.stage,
       coalesce(x.entered, 0) AS entered,
       coalesce(x.entered, 0)::float8 / r.assigned AS conversion_rate
FROM arms r
JOIN stages s USING (journey, persona)
LEFT JOIN reached x USING (journey, persona, step, variant, stage)
ORDER BY r.journey COLLATE "C", r.persona COLLATE "C", r.step COLLATE "C",
         r.variant COLLATE "C", s.ord
"""
)
"""One row per (journey, persona, step, variant, stage), in stage order."""

KNOWN: Final = """
SELECT count(*) > 0 AS journey_known,
       count(*) FILTER (WHERE version = $2) > 0 AS version_known,
       coalesce(string_agg(version::text, ', ' ORDER BY version), '') AS versions
FROM journey_versions
WHERE journey = $1
"""
"""Whether a journey (and a version of it) is published, and its versions."""
