"""The topics the orchestrator reads and writes (tests give it their own)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.topics import (
    DELIVERY_COMMANDS,
    DELIVERY_OUTCOMES,
    JOURNEY_TRANSITIONS,
    TIMERS_FIRED,
    TOUCHPOINTS,
    TOUCHPOINTS_DLQ,
)


@dataclass(frozen=True, slots=True)
class OrchestratorTopics:
    touchpoints: str = TOUCHPOINTS
    outcomes: str = DELIVERY_OUTCOMES
    timers: str = TIMERS_FIRED
    commands: str = DELIVERY_COMMANDS
    transitions: str = JOURNEY_TRANSITIONS
    dead_letters: str = TOUCHPOINTS_DLQ

    @property
    def inputs(self) -> tuple[str, str, str]:
        return self.touchpoints, self.outcomes, self.timers

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.inputs, self.commands, self.transitions, self.dead_letters)

    @classmethod
    def prefixed(cls, prefix: str) -> OrchestratorTopics:
        """Every topic under a prefix (isolated test runs)."""
        base = cls()
        return cls(*(f"{prefix}{name}" for name in (
            base.touchpoints, base.outcomes, base.timers, base.commands, base.transitions,
            base.dead_letters,
        )))  # fmt: skip
