"""Tests of the pure journey engine, and the helpers they share to drive one prospect."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from services.orchestrator.engine import (
    CompiledJourney,
    Decision,
    Input,
    ProspectState,
    TimerRequest,
    compile_journey,
    decide,
)
from services.orchestrator.journey import load_journey
from shared.contract import (
    Channel,
    ContentType,
    DeliveryOutcome,
    DeliveryStatus,
    IdentifyEvent,
    TimerFired,
    TouchpointEvent,
    TouchpointType,
)

NOW = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)  # a Monday


def compiled(text: str, version: int = 1) -> CompiledJourney:
    return compile_journey(load_journey(text), version)


@dataclass
class Prospect:
    """One prospect fed input after input, its state carried over like the runtime does."""

    journeys: dict[str, dict[int, CompiledJourney]]
    live: dict[str, int]
    prospect_id: str = "p-1"
    now: datetime = NOW
    state: ProspectState | None = None
    inputs: list[Input] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    serial: int = 0

    @classmethod
    def of(cls, *journeys: CompiledJourney, prospect_id: str = "p-1") -> Prospect:
        catalogue: dict[str, dict[int, CompiledJourney]] = {}
        for c in journeys:
            catalogue.setdefault(c.id, {})[c.version] = c
        live = {j: max(versions) for j, versions in catalogue.items()}
        return cls(catalogue, live, prospect_id)

    def publish(self, journey: CompiledJourney) -> None:
        self.journeys.setdefault(journey.id, {})[journey.version] = journey
        self.live[journey.id] = journey.version

    def feed(self, event: Input) -> Decision:
        decision = decide(self.state, self.prospect_id, event, self.journeys, self.live, self.now)
        self.state = decision.state
        self.inputs.append(event)
        self.decisions.append(decision)
        return decision

    def event_id(self) -> UUID:
        self.serial += 1
        return uuid5(NAMESPACE_URL, f"test:{self.prospect_id}:{self.serial}")

    def touch(
        self,
        kind: TouchpointType | str,
        properties: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        channel: Channel = Channel.WEB,
        emotion: str | None = None,
        campaign: str | None = None,
    ) -> Decision:
        kind = TouchpointType(kind)
        event = TouchpointEvent.model_validate(
            {
                "event_id": self.event_id(),
                "prospect_id": self.prospect_id,
                "type": kind,
                "name": name or kind.value,
                "channel": channel,
                "occurred_at": self.now,
                "received_at": self.now,
                "source": "test",
                "properties": dict(properties or {}),
                "emotion": emotion,
                "campaign": {"name": campaign, "source": "google"} if campaign else None,
            }
        )
        return self.feed(event)

    def identify(self, **traits: Any) -> Decision:
        return self.feed(
            IdentifyEvent(
                event_id=self.event_id(),
                prospect_id=self.prospect_id,
                occurred_at=self.now,
                received_at=self.now,
                source="test",
                traits=traits,
            )
        )

    def outcome(self, status: DeliveryStatus) -> Decision:
        return self.feed(
            DeliveryOutcome(
                event_id=self.event_id(),
                prospect_id=self.prospect_id,
                command_id=self.event_id(),
                status=status,
                channel=Channel.EMAIL,
                content="c",
                content_type=ContentType.EMAIL,
                occurred_at=self.now,
            )
        )

    def fire(self, timer: TimerRequest, *, at: datetime | None = None) -> Decision:
        """The timer comes due: the clock moves to its due time (or ``at``)."""
        self.now = max(self.now, at or timer.due_at)
        return self.feed(
            TimerFired(
                event_id=self.event_id(),
                prospect_id=self.prospect_id,
                timer_id=timer.timer_id,
                run_id=timer.run_id,
                journey=timer.journey,
                journey_version=timer.journey_version,
                step=timer.step,
                due_at=timer.due_at,
                fired_at=self.now,
                payload=timer.payload,
            )
        )

    @property
    def current(self) -> ProspectState:
        assert self.state is not None
        return self.state


def steps_of(decision: Decision) -> list[str | None]:
    return [t.step for t in decision.transitions if t.reason == "step"]


def sent(decision: Decision) -> list[str]:
    return [c.content for c in decision.commands]
