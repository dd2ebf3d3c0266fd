"""The send step: policies first (suppression, quiet hours, frequency cap), then one
delivery command with a deterministic id."""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from shared.contract import DeliveryCommand
from shared.contract.storable import check_storable
from shared.trusted import construct, replace

from ..journey.model import SendStep
from . import timing
from .compiled import CompiledJourney
from .state import RunState
from .turn import SENT, SendOutcome, Turn, stable_id


def send(
    turn: Turn, c: CompiledJourney, run: RunState, step: SendStep, outcome: SendOutcome
) -> tuple[RunState, str | None]:
    """Send, skip or defer as ``outcome`` (from :func:`check`) says; returns the run and
    the step to go to next (None if paused)."""
    after = step.next or c.following(step.id)
    if outcome.status == "skipped":
        assert outcome.held_by is not None
        return replace(run, {"skipped": {**run.skipped, step.id: outcome.held_by}}), after
    if outcome.status == "deferred":
        assert outcome.until is not None
        return turn.pause(run, step.id, outcome.until, "deferred_send"), None
    action = step.send
    variant = run.variants.get(step.id)
    chosen = next((v for v in action.variants if v.name == variant), None)
    command_id = stable_id(run.run_id, step.id, run.visits.get(step.id, 0))
    recipient = _recipient(turn.prospect_id, turn.traits)
    params: dict[str, JsonValue] = dict(action.params)
    # The other fields come from the validated journey, the run and the input; the
    # recipient (traits an update step may have set) and the parameters hold values of
    # the journey's author, checked as the contract checks every message.
    check_storable((recipient, params))
    turn.commands.append(
        construct(
            DeliveryCommand,
            {
                "schema_version": DeliveryCommand.SCHEMA_VERSION,
                "event_id": command_id,
                "prospect_id": turn.prospect_id,
                "kind": "delivery_command",
                "command_id": command_id,
                "journey": run.journey,
                "journey_version": run.version,
                "step": step.id,
                "content": chosen.content if chosen else action.content,
                "content_type": action.type,
                "channel": action.channel,
                "variant": chosen.name if chosen else None,
                "locale": _locale(
                    turn.traits.get(c.journey.locale_trait), c.journey.default_locale
                ),
                "recipient": recipient,
                "params": params,
                "issued_at": turn.now,
            },
        )
    )
    turn.sends.append(turn.now)
    return run, after


def check(turn: Turn, c: CompiledJourney, step: SendStep) -> SendOutcome:
    """Whether the policies let the send go now; a deferral waits for the later of the
    quiet hours' end and the cap's next free send, and names the policy that sets it."""
    if step.send.channel.value in turn.suppressed:
        return SendOutcome("skipped", "suppressed")
    policies = c.journey.policies
    outcome = SENT
    if (quiet := policies.quiet_hours) and (
        end := timing.quiet_until(turn.now, timing.zone_of(turn.traits, policies), quiet)
    ):
        if quiet.when_quiet == "skip":
            return SendOutcome("skipped", "quiet_hours")
        outcome = SendOutcome("deferred", "quiet_hours", end)
    cap = policies.frequency_cap
    if cap and (free := timing.capped_until(turn.now, turn.sends, cap)):
        if cap.when_capped == "skip":
            return SendOutcome("skipped", "frequency_cap")
        if outcome.until is None or free > outcome.until:
            outcome = SendOutcome("deferred", "frequency_cap", free)
    return outcome


def _locale(value: Any, default: str) -> str:
    """``es``, ``en`` or a regional form (``es-MX``, ``en_GB``); anything else: the default."""
    if isinstance(value, str):
        language = value.strip().lower().replace("_", "-").split("-")[0]
        if language in ("es", "en"):
            return language
    return default


def _recipient(prospect_id: str, traits: dict[str, Any]) -> dict[str, JsonValue]:
    recipient: dict[str, JsonValue] = {"prospect_id": prospect_id}
    for key in ("email", "phone", "first_name", "last_name", "company"):
        if isinstance(value := traits.get(key), str) and value:
            recipient[key] = value
    name = traits.get("name")
    if not (isinstance(name, str) and name):
        name = " ".join(str(recipient[k]) for k in ("first_name", "last_name") if k in recipient)
    if name:
        recipient["name"] = name
    return recipient
