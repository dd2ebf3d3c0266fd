"""One input being decided: the prospect's working copy, what the decision emits, and
the deterministic ids and choices every decision is made of."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from shared.contract import DeliveryCommand, StageTransition
from shared.ids import Namespace
from shared.trusted import construct, replace

from ..journey.conditions import Facts
from .facts import condition_facts
from .state import Input, RunState, TimerRequest, Waiting

NAMESPACE = UUID("84e8f16e-4a0f-4c65-922c-d88fa2506c43")
_IDS = Namespace(NAMESPACE)

Reason = Literal["entered", "advanced", "step", "exited", "goal", "retried"]
Pause = Literal["wait", "wait_for", "deferred_send"]
HeldBy = Literal["suppressed", "quiet_hours", "frequency_cap"]


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What a send step does now: send, or a policy holds it back (skipped, or deferred
    until ``until``). Its transition carries it, so the history shows every hold."""

    status: Literal["sent", "deferred", "skipped"]
    held_by: HeldBy | None = None
    until: datetime | None = None


SENT = SendOutcome("sent")


def stable_id(*parts: object) -> UUID:
    """The same parts give the same id, on every instance and every replay.

    It is ``uuid5(NAMESPACE, "part:part:…")``, the ids of stored runs, timers and
    commands; the namespace is hashed once, and each id goes on from a copy of that hash
    (an input needs six ids or more).
    """
    return _IDS.id(":".join([str(p) for p in parts]))


def weighted_choice(key: str, weights: Sequence[float]) -> int:
    """An index drawn with the given weights, fixed for ``key`` (a hash, not a random draw)."""
    digest = hashlib.sha256(key.encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(weights)
    for i, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return i
    return len(weights) - 1


@dataclass
class Turn:
    """One input being decided: the prospect's working copy and what the decision emits."""

    prospect_id: str
    event: Input
    now: datetime
    traits: dict[str, Any]
    facts: dict[str, Any]
    sends: list[datetime]
    suppressed: list[str]
    commands: list[DeliveryCommand] = field(default_factory=list)
    timers: list[TimerRequest] = field(default_factory=list)
    cancelled: list[UUID] = field(default_factory=list)
    transitions: list[StageTransition] = field(default_factory=list)
    _transition_ids: Namespace = field(init=False, repr=False, compare=False)
    """The ids every transition of the input takes: ``stable_id(event id, "transition",
    n)`` hashes "<event id>:transition:" once, and then each ``n``."""

    def __post_init__(self) -> None:
        self._transition_ids = _IDS.prefixed(f"{self.event.event_id}:transition:")

    def conditions(self) -> Facts:
        return condition_facts(self.traits, self.facts, self.event)

    def emit(
        self,
        run: RunState,
        reason: Reason,
        from_stage: str | None,
        to_stage: str | None,
        step: str | None = None,
        variant: str | None = None,
        outcome: SendOutcome | None = None,
        exit_reason: str | None = None,
    ) -> None:
        # Every field is the engine's own (ids, stages, the turn's UTC clock): validating
        # them again, or pydantic's model_construct, cost more than deciding.
        self.transitions.append(
            construct(
                StageTransition,
                {
                    "schema_version": StageTransition.SCHEMA_VERSION,
                    "event_id": self._transition_ids.id(str(len(self.transitions))),
                    "prospect_id": self.prospect_id,
                    "kind": "stage_transition",
                    "journey": run.journey,
                    "journey_version": run.version,
                    "persona": run.persona,
                    "run_id": run.run_id,
                    "from_stage": from_stage,
                    "to_stage": to_stage,
                    "step": step,
                    "variant": variant,
                    "cause_event_id": self.event.event_id,
                    "reason": reason,
                    "occurred_at": self.now,
                    "run_entered_at": run.entered_at,
                    "stage_entered_at": run.stage_entered_at,
                    "variants": dict(run.variants),
                    "send_outcome": outcome.status if outcome else None,
                    "held_by": outcome.held_by if outcome else None,
                    "deferred_until": outcome.until if outcome else None,
                    "exit_reason": exit_reason,
                },
            )
        )

    def pause(self, run: RunState, step: str, due: datetime, kind: Pause) -> RunState:
        """The run waits on ``step`` for a new durable timer due at ``due``."""
        parts: list[object] = [run.run_id, step, run.visits.get(step, 0)]
        if kind == "deferred_send":  # a send may be deferred more than once per visit
            parts += ["deferred", due.isoformat()]
        timer_id = stable_id(*parts)
        self.timers.append(
            TimerRequest(timer_id, run.run_id, run.journey, run.version, step, due, {"kind": kind})
        )
        waiting = Waiting(step=step, timer_id=timer_id, due_at=due, kind=kind)
        return replace(run, {"waiting": waiting})
