"""A journey definition laid out as a customer-journey map (pure: no I/O).

Stages are columns, left to right. A column stacks its cards top to bottom: the stage's
goals, the entry (in its stage), then the steps in file order; a stage with more than
``MAX_PER_LANE`` cards splits them over side-by-side lanes. Every lane has a gutter on each
side, and edges only run through gutters (vertically), between a card side and the gutter
next to it (horizontally), or along a band under the columns: an edge never crosses a card.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from services.orchestrator.journey.model import (
    Annotations,
    BranchStep,
    GotoStep,
    Journey,
    SendStep,
    SplitStep,
    Step,
    UpdateStep,
    WaitForStep,
    WaitStep,
)

from .labels import card_rows, condition_label, describe_step, duration, header_height, percent
from .model import Box, Card, CardKind, Column, Edge, EdgeKind, MapLayout, MapNumbers

CARD_WIDTH = 240.0
CARD_GAP = 28.0
MIN_HEIGHT = 48.0
MARGIN = 24.0
TITLE_HEIGHT = 60.0
PADDING = 14.0  # inside a column, around its lanes
LEFT_GUTTER = 64.0
GUTTER = 180.0  # between lanes: edge labels on its left, vertical edge tracks on its right
TRACK = 7.0
TRACKS = 8
PORT_MARGIN = 24.0
PORT_STEP = 32.0  # between the exits of a card with several outgoing edges
BAND_STEP = 6.0
MAX_PER_LANE = 8
SHORT_LABEL = 18


@dataclass(frozen=True, slots=True)
class _Transition:
    source: str
    target: str
    kind: EdgeKind
    label: str | None = None


@dataclass(slots=True)
class _Slot:
    card: Card
    lane: int  # over the whole map
    row: int  # in its lane


def layout(
    journey: Journey, version: int | None = None, numbers: MapNumbers | None = None
) -> MapLayout:
    """The map of a journey. With ``numbers``, cards and stage headers are sized for the
    measured lines too: pass the same numbers to :func:`svg.render_svg`."""
    stages = list(journey.stages)
    by_stage = _cards_by_stage(journey)
    slots: dict[str, _Slot] = {}
    lane_x: list[float] = []
    column_x: list[tuple[float, float]] = []
    x = MARGIN + LEFT_GUTTER
    for stage in stages:
        cards = by_stage[stage]
        lanes = max(1, math.ceil(len(cards) / MAX_PER_LANE))
        per_lane = max(1, math.ceil(len(cards) / lanes))
        first = len(lane_x)
        lane_x += [x + PADDING + j * (CARD_WIDTH + GUTTER) for j in range(lanes)]
        for i, card in enumerate(cards):
            slots[card.id] = _Slot(card, first + i // per_lane, i % per_lane)
        width = 2 * PADDING + lanes * CARD_WIDTH + (lanes - 1) * GUTTER
        column_x.append((x, width))
        x += width + GUTTER - 2 * PADDING
    transitions = [t for t in _transitions(journey) if t.source in slots and t.target in slots]
    routes = {id(t): _route(slots[t.source], slots[t.target], t.label) for t in transitions}
    exits: dict[str, list[_Transition]] = {}
    for t in transitions:
        if routes[id(t)] != "down":
            exits.setdefault(t.source, []).append(t)

    top = MARGIN + TITLE_HEIGHT
    cards_top = top + header_height(numbers is not None) + PADDING
    bottoms = [cards_top] * len(lane_x)
    for slot in slots.values():  # in column order, so rows come in order within a lane
        text_height = card_rows(slot.card, numbers)[1]
        ports = len(exits.get(slot.card.id, []))
        port_height = 2 * PORT_MARGIN + (ports - 1) * PORT_STEP if ports > 1 else 0.0
        height = max(MIN_HEIGHT, text_height, port_height)
        y = bottoms[slot.lane]
        box = Box(lane_x[slot.lane], y, CARD_WIDTH, height)
        slot.card = replace(slot.card, box=box)
        bottoms[slot.lane] = y + height + CARD_GAP
    column_bottom = max(bottoms) - CARD_GAP + PADDING
    columns = [
        Column(stage, Box(cx, top, width, column_bottom - top))
        for stage, (cx, width) in zip(stages, column_x, strict=True)
    ]

    router = _Router(lane_x, column_bottom + 10, slots, exits)
    edges = [
        Edge(t.source, t.target, t.kind, t.label, router.points(t, routes[id(t)]))
        for t in transitions
    ]
    right = lane_x[-1] + CARD_WIDTH + GUTTER
    return MapLayout(
        journey=journey.journey,
        version=version,
        title=journey.title,
        persona=journey.persona.id,
        columns=columns,
        cards=[slot.card for slot in slots.values()],
        edges=edges,
        width=right + MARGIN,
        height=router.band_y + MARGIN,
    )


def _cards_by_stage(journey: Journey) -> dict[str, list[Card]]:
    """Every card (without its box yet), by stage, in the order they are stacked."""
    stages = list(journey.stages)
    known = set(stages)
    goals: dict[str, list[Card]] = {stage: [] for stage in stages}
    rest: dict[str, list[Card]] = {stage: [] for stage in stages}
    for i, goal in enumerate(journey.goals):
        stage = goal.stage if goal.stage in known else stages[0]
        detail = f"on {goal.event} → {goal.stage}"
        if goal.when is not None:
            detail += f" when {condition_label(goal.when)}"
        title = f"Reaches {goal.stage}"
        goals[stage].append(_card(f"goal:{i}", "goal", stage, goal.map, title, None, None, detail))
    entry = journey.entry
    stage = entry.map.stage if entry.map.stage in known else stages[0]
    detail = f"on {entry.event}" + (f" when {condition_label(entry.when)}" if entry.when else "")
    title = f"Enters on {entry.event}"
    rest[stage].append(_card("entry", "entry", stage, entry.map, title, None, None, detail))
    stage = stages[0]
    for step in journey.steps:
        if (marked := step.map.stage) is not None and marked in known:
            stage = marked
        kind, title, channel, content, does = describe_step(step)
        rest[stage].append(_card(step.id, kind, stage, step.map, title, channel, content, does))
    return {stage: goals[stage] + rest[stage] for stage in stages}


def _card(
    ident: str,
    kind: CardKind,
    stage: str,
    notes: Annotations,
    title: str,
    channel: str | None,
    content: str | None,
    detail: str | None,
) -> Card:
    """A card without its box; the map annotations win over the defaults."""
    if notes.channel is not None:
        channel = str(notes.channel)
    emotion = None if notes.emotion is None else str(notes.emotion)
    box = Box(0, 0, CARD_WIDTH, 0)
    return Card(ident, kind, stage, notes.title or title, box, channel, content, emotion, detail)


def _transitions(journey: Journey) -> list[_Transition]:
    """Every way a run can move: the engine's rules (a step without ``next`` goes on to the
    following step in the file; an exit goes nowhere)."""
    found = [_Transition("entry", journey.first_step, "next")]
    steps: list[Step] = list(journey.steps)
    for i, step in enumerate(steps):
        following = steps[i + 1].id if i + 1 < len(steps) else None
        if isinstance(step, SendStep | WaitStep | UpdateStep):
            if (target := step.next or following) is not None:
                found.append(_Transition(step.id, target, "next"))
        elif isinstance(step, WaitForStep):
            if (target := step.next or following) is not None:
                found.append(_Transition(step.id, target, "next", step.wait_for.event))
            timeout = f"timeout {duration(step.wait_for.timeout)}"
            found.append(_Transition(step.id, step.on_timeout, "timeout", timeout))
        elif isinstance(step, BranchStep):
            for case in step.branch:
                found.append(_Transition(step.id, case.next, "branch", condition_label(case.when)))
            found.append(_Transition(step.id, step.else_, "else", "else"))
        elif isinstance(step, SplitStep):
            total = sum(arm.weight for arm in step.split)
            for arm in step.split:
                label = f"{arm.variant} · {percent(arm.weight, total)}"
                found.append(_Transition(step.id, arm.next, "split", label))
        elif isinstance(step, GotoStep):
            found.append(_Transition(step.id, step.goto, "goto"))
    return found


def _route(source: _Slot, target: _Slot, label: str | None) -> str:
    if source.lane == target.lane:
        short = label is None or len(label) <= SHORT_LABEL  # fits beside a straight arrow
        return "down" if target.row == source.row + 1 and short else "loop"
    return "near" if target.lane == source.lane + 1 else "far"


class _Router:
    """Polylines through the gutters; each vertical run gets its own track in its gutter."""

    def __init__(
        self,
        lane_x: list[float],
        band_top: float,
        slots: dict[str, _Slot],
        exits: dict[str, list[_Transition]],
    ) -> None:
        # Gutter g is left of lane g; the last one is right of the last lane.
        self.bounds = [*lane_x, lane_x[-1] + CARD_WIDTH + GUTTER]
        self.used = [0] * len(self.bounds)
        self.band_y = band_top
        self.slots = slots
        self.port = {id(t): i for found in exits.values() for i, t in enumerate(found)}
        self.count = {source: len(found) for source, found in exits.items()}

    def track(self, gutter: int) -> float:
        x = self.bounds[gutter] - 6 - (self.used[gutter] % TRACKS) * TRACK
        self.used[gutter] += 1
        return x

    def points(self, t: _Transition, route: str) -> tuple[tuple[float, float], ...]:
        source, target = self.slots[t.source], self.slots[t.target]
        s, d = source.card.box, target.card.box
        if route == "down":
            middle = s.x + s.width / 2
            return (middle, s.y + s.height), (middle, d.y)
        if self.count[t.source] == 1:
            y = s.y + s.height / 2
        else:
            y = s.y + PORT_MARGIN + self.port[id(t)] * PORT_STEP
        right = s.x + s.width
        gutter = self.track(source.lane + 1)
        if route == "loop":  # back into the card's own right side, near its bottom
            end = d.y + d.height - 6
            return (right, y), (gutter, y), (gutter, end), (d.x + d.width, end)
        end = d.y + d.height / 2
        if route == "near":
            return (right, y), (gutter, y), (gutter, end), (d.x, end)
        band = self.band_y
        self.band_y += BAND_STEP
        arrive = self.track(target.lane)
        return (right, y), (gutter, y), (gutter, band), (arrive, band), (arrive, end), (d.x, end)
