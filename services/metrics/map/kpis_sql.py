"""The journey map's queries: what happened at each step of a cohort's runs.

$1 journey, $2 version, $3 persona, $4 since, $5 until (NULL: no filter). The cohort is
the funnel's: runs that entered the journey in [since, until).
"""

from typing import Final

_COHORT: Final = """
WITH cohort AS (
    SELECT run_id, prospect_id, occurred_at AS entered_at
    FROM journey_history
    WHERE reason = 'entered' AND journey = $1
      AND ($2::int IS NULL OR journey_version = $2)
      AND ($3::text IS NULL OR persona = $3)
      AND ($4::timestamptz IS NULL OR occurred_at >= $4)
      AND ($5::timestamptz IS NULL OR occurred_at < $5)
)
"""

# Each run's first visit of each step; whether the run later moved to another stage
# (converted), ended in the stage it had at the step (dropped), and whether the prospect
# engaged with a tracked touchpoint of the step (opened, clicked, watched, ...).
STEPS: Final = (
    _COHORT
    + """
, visits AS (
    SELECT DISTINCT ON (h.run_id, h.step)
           h.run_id, c.prospect_id, h.step, h.id, h.to_stage, h.variant, h.occurred_at
    FROM journey_history h JOIN cohort c USING (run_id)
    WHERE h.reason = 'step'
    ORDER BY h.run_id, h.step, h.id
), outcomes AS (
    SELECT v.*,
           EXISTS (SELECT 1 FROM journey_history l
                   WHERE l.run_id = v.run_id AND l.id > v.id AND l.reason IN ('advanced', 'goal')
                     AND l.to_stage IS DISTINCT FROM v.to_stage) AS converted,
           EXISTS (SELECT 1 FROM journey_history x
                   WHERE x.run_id = v.run_id AND x.id > v.id AND x.reason = 'exited'
                     AND x.from_stage IS NOT DISTINCT FROM v.to_stage) AS ended,
           EXISTS (SELECT 1 FROM prospect_timeline t
                   WHERE t.prospect_id = v.prospect_id AND t.occurred_at >= v.occurred_at
                     AND t.kind = 'touchpoint' AND t.type <> 'feedback'
                     AND t.detail -> 'properties' ->> 'journey' = $1
                     AND t.detail -> 'properties' ->> 'step' = v.step) AS engaged
    FROM visits v
)
SELECT step,
       count(*) AS reached,
       count(*) FILTER (WHERE ended AND NOT converted) AS dropped,
       count(*) FILTER (WHERE engaged) AS engaged,
       count(*) FILTER (WHERE engaged AND converted) AS engaged_converted,
       count(*) FILTER (WHERE NOT engaged) AS idle,
       count(*) FILTER (WHERE NOT engaged AND converted) AS idle_converted,
       coalesce(jsonb_object_agg(variant, jsonb_build_array(assigned, won))
                FILTER (WHERE variant IS NOT NULL), '{}'::jsonb)::text AS variants
FROM (
    SELECT step, ended, converted, engaged, variant,
           count(*) OVER (PARTITION BY step, variant) AS assigned,
           count(*) FILTER (WHERE converted) OVER (PARTITION BY step, variant) AS won
    FROM outcomes
) o
GROUP BY step
"""
)

# Touchpoints and delivery outcomes that name a step of the journey, after the run began.
TOUCHES: Final = (
    _COHORT
    + """
SELECT coalesce(t.detail -> 'properties' ->> 'step', t.detail ->> 'step') AS step,
       t.kind, t.type,
       CASE WHEN t.type = 'video_progress' THEN t.detail -> 'properties' ->> 'percent' END
           AS percent,
       t.detail ->> 'emotion' AS emotion,
       count(DISTINCT t.prospect_id) AS prospects,
       count(DISTINCT t.event_id) AS events
FROM prospect_timeline t
JOIN cohort c ON c.prospect_id = t.prospect_id AND t.occurred_at >= c.entered_at
WHERE (t.kind = 'touchpoint' AND t.detail -> 'properties' ->> 'journey' = $1)
   OR (t.kind = 'delivery' AND t.detail ->> 'journey' = $1)
GROUP BY 1, 2, 3, 4, 5
"""
)

# Runs that reached a stage through a stage goal, per stage.
GOALS: Final = (
    _COHORT
    + """
SELECT h.to_stage AS stage, count(DISTINCT h.run_id) AS reached
FROM journey_history h JOIN cohort c USING (run_id)
WHERE h.reason = 'goal'
GROUP BY 1
"""
)
