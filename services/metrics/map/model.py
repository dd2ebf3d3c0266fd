"""What a journey map shows: the drawn layout and, for a live map, the measured numbers.

The layout comes from the journey definition alone (``layout.py``); the numbers from
PostgreSQL (``kpis.py``); ``svg.py`` and ``page.py`` draw them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CardKind = Literal["entry", "goal", "send", "wait", "wait_for", "branch", "split", "update",
                   "goto", "exit"]  # fmt: skip
EdgeKind = Literal["next", "timeout", "branch", "else", "split", "goto"]


@dataclass(frozen=True, slots=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    def intersects(self, other: Box) -> bool:
        return not (
            self.x + self.width <= other.x
            or other.x + other.width <= self.x
            or self.y + self.height <= other.y
            or other.y + other.height <= self.y
        )


@dataclass(frozen=True, slots=True)
class Card:
    """A touchpoint or decision of the journey: a step, the entry, or a stage goal."""

    id: str  # the step id; "entry" for the entry; "goal:<index>" for stage goals
    kind: CardKind
    stage: str
    title: str
    box: Box
    channel: str | None = None
    content: str | None = None  # catalogue content id of a send
    expected_emotion: str | None = None
    detail: str | None = None  # e.g. "waits 3d", "until 09:00 mon-fri", "score +5"


@dataclass(frozen=True, slots=True)
class Edge:
    source: str  # card id
    target: str  # card id
    kind: EdgeKind
    label: str | None = None  # branch condition, timeout, split weight, ...
    points: tuple[tuple[float, float], ...] = ()  # polyline from source to target


@dataclass(frozen=True, slots=True)
class Column:
    stage: str
    box: Box


@dataclass(frozen=True, slots=True)
class MapLayout:
    journey: str
    version: int | None
    title: str
    persona: str
    columns: list[Column]
    cards: list[Card]
    edges: list[Edge]
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class StageNumbers:
    entered: int
    current: int
    converted: int
    dropped: int
    median_seconds: float | None


@dataclass(frozen=True, slots=True)
class CardNumbers:
    """Measured at one card (a step, the entry or a goal)."""

    reached: int = 0  # runs that entered the step (or reached the goal)
    delivered: int = 0  # delivery outcomes "sent" of a send step
    engaged: dict[str, int] = field(default_factory=dict)  # touchpoint type → prospects
    emotions: dict[str, int] = field(default_factory=dict)  # feedback emotion → count
    actual_emotion: str | None = None  # the most frequent feedback emotion
    pain: str | None = None  # why this is a moment of pain, if it is one
    truth: str | None = None  # why this is a moment of truth, if it is one
    variants: dict[str, VariantNumbers] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VariantNumbers:
    assigned: int
    converted: int  # assigned runs that reached a later stage than the step's
    conversion_rate: float | None


@dataclass(frozen=True, slots=True)
class MapNumbers:
    stages: dict[str, StageNumbers]
    cards: dict[str, CardNumbers]
