"""The engine's inputs and outputs: per-prospect state (stored as JSON) and decisions.

Everything here is plain data: the runtime loads a ProspectState from PostgreSQL, calls
``decide`` and stores what it returns, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.contract import (
    DeliveryCommand,
    DeliveryOutcome,
    IdentifyEvent,
    StageTransition,
    TimerFired,
    TouchpointEvent,
)

Input = TouchpointEvent | IdentifyEvent | DeliveryOutcome | TimerFired
"""What the engine reacts to: everything that happens to one prospect, in order."""


class Waiting(BaseModel):
    """A run paused on a wait or wait_for step until its timer (or the awaited event)."""

    model_config = ConfigDict(frozen=True)

    step: str
    timer_id: UUID
    due_at: datetime
    kind: Literal["wait", "wait_for", "deferred_send"]


class RunState(BaseModel):
    """One prospect's run through one journey version."""

    model_config = ConfigDict(frozen=True)

    run_id: UUID
    journey: str
    version: int
    persona: str
    status: Literal["active", "exited"] = "active"
    stage: str | None = None
    step: str | None = None
    entered_at: datetime
    stage_entered_at: datetime | None = None
    step_entered_at: datetime | None = None
    waiting: Waiting | None = None
    variants: dict[str, str] = Field(default_factory=dict, description="split/send step → variant")
    visits: dict[str, int] = Field(default_factory=dict, description="step → times entered")
    skipped: dict[str, str] = Field(
        default_factory=dict,
        description="send step → why it was last skipped (suppressed, quiet_hours, frequency_cap)",
    )
    number: int = Field(1, ge=1, description="which run of the journey for the prospect: 1, 2, …")
    exit_reason: str | None = None
    exited_at: datetime | None = None


class ProspectState(BaseModel):
    """Everything the engine knows about one prospect."""

    model_config = ConfigDict(frozen=True)

    prospect_id: str
    traits: dict[str, Any] = Field(default_factory=dict)
    facts: dict[str, Any] = Field(default_factory=dict)
    runs: dict[str, RunState] = Field(default_factory=dict, description="journey id → latest run")
    sends: list[datetime] = Field(default_factory=list, description="recent send times (caps)")
    suppressed: list[str] = Field(default_factory=list, description="channels unsubscribed")
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TimerRequest:
    """A durable timer to store; when due, the runtime feeds a TimerFired back in."""

    timer_id: UUID
    run_id: UUID
    journey: str
    journey_version: int
    step: str
    due_at: datetime
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Decision:
    """What one input did to one prospect."""

    state: ProspectState
    commands: list[DeliveryCommand] = field(default_factory=list)
    timers: list[TimerRequest] = field(default_factory=list)
    cancelled_timers: list[UUID] = field(default_factory=list)
    transitions: list[StageTransition] = field(default_factory=list)
