"""What each message adds to the series: a pure function of the message.

No I/O here: the consumer decodes, calls :func:`count` for every new message of a batch,
and stores the resulting :class:`Tally` with the batch's offsets in one transaction.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.contract import (
    DeliveryOutcome,
    IdentifyEvent,
    StageTransition,
    TouchpointEvent,
    TouchpointType,
    WireMessage,
)

from .series import BUCKETS, SERIES

Labels = tuple[tuple[str, str], ...]
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Known:
    """Journeys and their step ids: label values outside these are counted as ``other``.

    Touchpoints come from the public API, so their journey and step properties are
    whatever a sender wrote; bounding them keeps the series count bounded.
    """

    steps: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def journey(self, value: object) -> str:
        if value is None or value == "":
            return ""
        return value if isinstance(value, str) and value in self.steps else OTHER

    def step(self, journey: str, value: object) -> str:
        if value is None or value == "":
            return ""
        steps = self.steps.get(journey, frozenset())
        return value if isinstance(value, str) and value in steps else OTHER


@dataclass
class Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    sum: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(BUCKETS, value)] += 1
        self.sum += value
        self.count += 1


@dataclass
class Tally:
    """Increments of one batch, summed per series."""

    counters: dict[tuple[str, Labels], float] = field(default_factory=dict)
    histograms: dict[tuple[str, Labels], Histogram] = field(default_factory=dict)

    def inc(self, name: str, **labels: str) -> None:
        key = (name, _labels(name, labels))
        self.counters[key] = self.counters.get(key, 0.0) + 1.0

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        key = (name, _labels(name, labels))
        self.histograms.setdefault(key, Histogram()).observe(max(seconds, 0.0))

    def __bool__(self) -> bool:
        return bool(self.counters or self.histograms)


def _labels(name: str, labels: Mapping[str, str]) -> Labels:
    expected = SERIES[name].labels
    if set(labels) != set(expected):
        raise ValueError(f"{name} takes labels {expected}, got {sorted(labels)}")
    return tuple((key, labels[key]) for key in expected)


def count(tally: Tally, message: WireMessage, known: Known) -> None:
    if isinstance(message, StageTransition):
        _transition(tally, message)
    elif isinstance(message, TouchpointEvent):
        _touchpoint(tally, message, known)
    elif isinstance(message, DeliveryOutcome):
        tally.inc(
            "trayecto_deliveries_total",
            journey=known.journey(message.journey),
            channel=message.channel.value,
            content=message.content,
            variant=message.variant or "",
            status=message.status.value,
        )
    elif not isinstance(message, IdentifyEvent):
        raise TypeError(f"the metrics service does not count {type(message).__name__}")


def _since(start: datetime | None, end: datetime) -> float | None:
    return None if start is None else (end - start).total_seconds()


def _transition(tally: Tally, t: StageTransition) -> None:
    run = {"journey": t.journey, "version": str(t.journey_version), "persona": t.persona}
    if t.reason == "step":
        tally.inc("trayecto_step_entries_total", **run, step=t.step or "", variant=t.variant or "")
        return
    if t.reason == "retried":
        return  # a deferred send checked again: no step entered, no stage moved
    if t.reason == "entered":
        tally.inc("trayecto_journey_entries_total", **run)
    elif t.reason == "exited":
        tally.inc("trayecto_journey_exits_total", **run, stage=t.from_stage or "")
    elif t.to_stage == t.from_stage:
        return  # a goal reached in the stage the run is already in
    if t.from_stage is not None:
        outcome = "exited" if t.reason == "exited" else "converted"
        tally.inc("trayecto_stage_exits_total", **run, stage=t.from_stage, outcome=outcome)
        if t.to_stage is not None:
            tally.inc(
                "trayecto_stage_conversions_total", **run, stage=t.from_stage, to_stage=t.to_stage
            )
        spent = _since(t.stage_entered_at, t.occurred_at)
        if spent is not None:
            tally.observe("trayecto_time_in_stage_seconds", spent, **run, stage=t.from_stage)
    if t.to_stage is not None:
        tally.inc("trayecto_stage_entries_total", **run, stage=t.to_stage)
        since_entry = _since(t.run_entered_at, t.occurred_at)
        if since_entry is not None:
            tally.observe("trayecto_time_to_stage_seconds", since_entry, **run, stage=t.to_stage)
        for step, variant in sorted(t.variants.items()):
            tally.inc(
                "trayecto_variant_stage_entries_total",
                journey=t.journey,
                version=str(t.journey_version),
                step=step,
                variant=variant,
                stage=t.to_stage,
            )


def _touchpoint(tally: Tally, tp: TouchpointEvent, known: Known) -> None:
    tally.inc("trayecto_touchpoints_total", type=tp.type.value, channel=tp.channel.value)
    journey = known.journey(tp.properties.get("journey"))
    step = known.step(journey, tp.properties.get("step")) if journey else ""
    if journey and step:
        tally.inc("trayecto_touchpoint_engagements_total", journey=journey, step=step,
                  type=tp.type.value)  # fmt: skip
    if tp.type is TouchpointType.FEEDBACK and tp.emotion is not None:
        tally.inc("trayecto_feedback_total", journey=journey, step=step, emotion=tp.emotion.value)
