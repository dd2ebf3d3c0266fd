"""Series of a published journey that exist at 0 before its first event.

``increase()`` and ``rate()`` need two samples of a series: the first value of a series
that appears already at 3 is never counted. So every series whose label values follow
from a journey definition (its stages, steps, variants) is served at 0 as soon as the
journey is published, and the first prospects through it are counted too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from shared.contract import Emotion

from .counting import Labels
from .funnel import DEFAULT_STAGES
from .series import SERIES


def _labels(name: str, **values: str) -> tuple[str, Labels]:
    return name, tuple((key, values[key]) for key in SERIES[name].labels)


def zero_series(
    journey: str, version: int, definition: Mapping[str, Any]
) -> Iterator[tuple[str, Labels]]:
    """(series, labels) of every journey-derived series of one published version."""
    persona = str(definition.get("persona", {}).get("id", ""))
    run = {"journey": journey, "version": str(version), "persona": persona}
    stages = [str(s) for s in definition.get("stages") or DEFAULT_STAGES]
    steps = [s for s in definition.get("steps", []) if isinstance(s, Mapping)]
    yield _labels("trayecto_journey_entries_total", **run)
    for i, stage in enumerate(stages):
        yield _labels("trayecto_stage_entries_total", **run, stage=stage)
        yield _labels("trayecto_journey_exits_total", **run, stage=stage)
        for outcome in ("converted", "exited"):
            yield _labels("trayecto_stage_exits_total", **run, stage=stage, outcome=outcome)
        for later in stages[i + 1 :]:
            yield _labels("trayecto_stage_conversions_total", **run, stage=stage, to_stage=later)
        for histogram in ("trayecto_time_in_stage_seconds", "trayecto_time_to_stage_seconds"):
            yield _labels(histogram, **run, stage=stage)
    for step in steps:
        step_id = str(step.get("id"))
        variants = [str(arm.get("variant")) for arm in step.get("split") or []]
        send = step.get("send")
        if isinstance(send, Mapping):
            variants += [str(v.get("name")) for v in send.get("variants") or []]
        for variant in variants or [""]:
            yield _labels("trayecto_step_entries_total", **run, step=step_id, variant=variant)
        for variant in variants:
            for stage in stages:
                yield _labels(
                    "trayecto_variant_stage_entries_total",
                    journey=journey,
                    version=str(version),
                    step=step_id,
                    variant=variant,
                    stage=stage,
                )
        for emotion in Emotion:
            yield _labels(
                "trayecto_feedback_total", journey=journey, step=step_id, emotion=emotion.value
            )
