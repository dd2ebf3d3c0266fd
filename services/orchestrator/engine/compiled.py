"""A journey version ready to run: conditions compiled once, steps indexed by id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from shared.contract import TouchpointEvent

from ..journey.conditions import Predicate, compile_condition
from ..journey.loader import next_in_order
from ..journey.model import BranchStep, Goal, Journey, Step, WaitForStep


@dataclass(frozen=True, slots=True)
class CompiledJourney:
    """One published version of a journey, with everything ``decide`` looks up per input."""

    journey: Journey
    version: int
    persona: Predicate
    entry: Predicate
    goals: tuple[tuple[Goal, Predicate], ...]
    predicates: Mapping[str, tuple[Predicate, ...]]
    """step id → its conditions: one per case of a branch, the ``when`` of a wait_for."""
    steps: Mapping[str, Step]
    index: Mapping[str, int]
    stage_order: Mapping[str, int]
    exit_on_retire: bool = False
    """Retired with mode ``exit``: its runs leave the journey on their next input."""

    @property
    def id(self) -> str:
        return self.journey.journey

    @property
    def first_stage(self) -> str:
        """Where a run starts: the first step's map stage, else the first stage."""
        return self.journey.steps[0].map.stage or self.journey.stages[0]

    def following(self, step_id: str) -> str | None:
        """The step after this one in file order (None after the last one)."""
        return next_in_order(self.journey, self.index[step_id])

    def moves(self, current: str | None, target: str) -> bool:
        """Whether a run in ``current`` moves to ``target``: forward, or back if allowed."""
        if current is None:
            return True
        if target == current:
            return False
        ahead = self.stage_order[target] > self.stage_order.get(current, -1)
        return ahead or self.journey.allow_backward


def event_matches(expected: str, event: TouchpointEvent) -> bool:
    """``expected`` is a touchpoint type, or ``custom:<name>`` for the event name as sent."""
    if expected.startswith("custom:"):
        return event.name == expected.removeprefix("custom:")
    return event.type.value == expected


def compile_journey(journey: Journey, version: int) -> CompiledJourney:
    """Compile every condition of ``journey`` once; the result is shared by all prospects."""
    predicates: dict[str, tuple[Predicate, ...]] = {}
    for step in journey.steps:
        if isinstance(step, BranchStep):
            predicates[step.id] = tuple(compile_condition(case.when) for case in step.branch)
        elif isinstance(step, WaitForStep):
            predicates[step.id] = (compile_condition(step.wait_for.when),)
    return CompiledJourney(
        journey=journey,
        version=version,
        persona=compile_condition(journey.persona.when),
        entry=compile_condition(journey.entry.when),
        goals=tuple((goal, compile_condition(goal.when)) for goal in journey.goals),
        predicates=MappingProxyType(predicates),
        steps=MappingProxyType({step.id: step for step in journey.steps}),
        index=MappingProxyType({step.id: i for i, step in enumerate(journey.steps)}),
        stage_order=MappingProxyType({stage: i for i, stage in enumerate(journey.stages)}),
    )
