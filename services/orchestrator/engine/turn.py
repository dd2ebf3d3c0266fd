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

from ..journey.conditions import Facts
from .facts import condition_facts
from .state import Input, RunState, TimerRequest, Waiting
from .trusted import construct, replace

NAMESPACE = UUID("84e8f16e-4a0f-4c65-922c-d88fa2506c43")
_NAMESPACED = hashlib.sha1(NAMESPACE.bytes, usedforsecurity=False)
# uuid5 keeps 122 bits of the digest and sets the version (5) and the variant (RFC 4122).
_DIGEST_BITS = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5 = (0x5000 << 64) | (0x8000 << 48)

Reason = Literal["entered", "advanced", "step", "exited", "goal"]
Pause = Literal["wait", "wait_for", "deferred_send"]


def stable_id(*parts: object) -> UUID:
    """The same parts give the same id, on every instance and every replay.

    It is ``uuid5(NAMESPACE, "part:part:…")``, the ids of stored runs, timers and
    commands; the namespace is hashed once, and each id goes on from a copy of that hash
    (an input needs six ids or more).
    """
    digest = _NAMESPACED.copy()
    digest.update(":".join([str(p) for p in parts]).encode())
    return _uuid5(digest)


def _uuid5(digest: hashlib._Hash) -> UUID:
    """The version 5 UUID of a SHA-1 digest (as ``uuid5`` makes it)."""
    return UUID(int=int.from_bytes(digest.digest()[:16]) & _DIGEST_BITS | _VERSION_5)


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
    _transition_ids: hashlib._Hash = field(init=False, repr=False, compare=False)
    """The hash every transition id of the input starts from: ``stable_id(event id,
    "transition", n)`` hashes "<event id>:transition:" and then ``n``."""

    def __post_init__(self) -> None:
        self._transition_ids = _NAMESPACED.copy()
        self._transition_ids.update(f"{self.event.event_id}:transition:".encode())

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
    ) -> None:
        # Every field is the engine's own (ids, stages, the turn's UTC clock): validating
        # them again, or pydantic's model_construct, cost more than deciding.
        digest = self._transition_ids.copy()
        digest.update(str(len(self.transitions)).encode())
        self.transitions.append(
            construct(
                StageTransition,
                {
                    "schema_version": StageTransition.SCHEMA_VERSION,
                    "event_id": _uuid5(digest),
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
