"""The series the metrics service counts from the topics: names, help and label names.

``docs/metrics.md`` documents the same list; a test keeps them in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["counter", "histogram"]

# Seconds: from a minute to a month, for stage durations of ad-driven funnels.
BUCKETS: Final = (
    60.0,
    300.0,
    900.0,
    3600.0,
    4 * 3600.0,
    12 * 3600.0,
    86400.0,
    3 * 86400.0,
    7 * 86400.0,
    14 * 86400.0,
    30 * 86400.0,
)


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]


_RUN = ("journey", "version", "persona")

SERIES: Final = {
    s.name: s
    for s in (
        Series("trayecto_stage_entries_total", "counter", "Runs entering a stage",
               (*_RUN, "stage")),
        Series("trayecto_stage_exits_total", "counter",
               "Runs leaving a stage: converted (to another stage) or exited there",
               (*_RUN, "stage", "outcome")),
        Series("trayecto_stage_conversions_total", "counter",
               "Conversions from stage to to_stage", (*_RUN, "stage", "to_stage")),
        Series("trayecto_journey_entries_total", "counter", "Runs started", _RUN),
        Series("trayecto_journey_exits_total", "counter",
               "Runs ended, by the stage they ended in", (*_RUN, "stage")),
        Series("trayecto_step_entries_total", "counter",
               "Steps entered, with the variant chosen there", (*_RUN, "step", "variant")),
        Series("trayecto_variant_stage_entries_total", "counter",
               "Stage entries of runs assigned a variant at an earlier split or send step",
               ("journey", "version", "step", "variant", "stage")),
        Series("trayecto_touchpoints_total", "counter", "Touchpoints ingested",
               ("type", "channel")),
        Series("trayecto_touchpoint_engagements_total", "counter",
               "Tracked touchpoints attributed to a journey step", ("journey", "step", "type")),
        Series("trayecto_feedback_total", "counter",
               "Feedback received, by the journey step it is about",
               ("journey", "step", "emotion")),
        Series("trayecto_deliveries_total", "counter", "Delivery outcomes",
               ("journey", "channel", "content", "variant", "status")),
        Series("trayecto_metrics_events_total", "counter",
               "Messages the metrics service has counted, by outcome",
               ("topic", "outcome")),
        Series("trayecto_time_in_stage_seconds", "histogram",
               "Time a run spent in a stage, observed when it leaves it", (*_RUN, "stage")),
        Series("trayecto_time_to_stage_seconds", "histogram",
               "Time from the run's journey entry to entering the stage", (*_RUN, "stage")),
    )
}  # fmt: skip
