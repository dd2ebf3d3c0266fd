"""``decide``: one input for one prospect → the prospect's new state and what to do.

Pure: no I/O, no clock (``now`` is given), no randomness (choices are hashes of the
prospect, journey and step, so they are the same on every run). For each input:

1. The prospect's data: an identify merges its traits (a null removes one); touchpoints
   and delivery outcomes update the facts (``facts``); an ``unsubscribed`` touchpoint
   suppresses its channel (``properties.channel``, else the event's channel).
2. Every journey, by id. With no active run, a touchpoint may start one: the live
   version's entry event matches, ``entry.when`` and the persona hold, and ``reentry``
   allows it (``never``: one run ever; ``after_exit``: again once the last run exited;
   ``always``: also while a run is active, which then exits with reason ``reentered``
   and the new run starts: never two active runs). With an active run, the goals the event
   reaches move its stage, then the input may resume it: its own timer (any other is
   stale and ignored), or the event its wait_for awaits (the timeout timer is then
   cancelled). A run executes step after step until it pauses or exits; more than
   MAX_STEPS steps on one input exits it with reason ``loop_limit``.

Transitions (``reason``): ``entered`` (to the start stage); ``step`` for every step
entered (``from_stage``/``to_stage``: the stage before and after the step's map stage;
``variant``: the split arm or content variant); ``advanced`` when a step's map stage
moves the run; ``goal`` when a goal does (no step); ``exited`` (``from_stage``: the
last stage, ``to_stage`` empty, ``exit_reason``). Stages move forward only, unless
``allow_backward``.

A send step's transition says what the send did (``send_outcome``: sent, deferred or
skipped; ``held_by``: the policy; ``deferred_until``). Skipped (suppressed channel, or
quiet hours / frequency cap with ``skip``): no command, and the run's ``skipped`` records
why. Deferred: the run waits (``deferred_send``) until the quiet hours end or the cap
(counting the sends of every journey) frees a send, then checks again: a ``retried``
transition (same stage) with the new outcome. Quiet hours are local to the prospect
(time zone trait, else ``default_timezone``; an unknown zone counts as none).

A journey absent from ``live`` takes no new entries; runs continue on the version they
started on, as long as ``journeys`` still holds it, unless that version was retired with
mode ``exit`` (``exit_on_retire``): then the run exits (reason ``retired``) on its next
input, and its pending timer is cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from shared.contract import Channel, IdentifyEvent, TimerFired, TouchpointEvent, TouchpointType
from shared.trusted import replace

from ..journey.model import SendStep, WaitForStep, WaitStep
from . import timing
from .compiled import CompiledJourney, event_matches
from .facts import apply_input
from .state import Decision, Input, ProspectState, RunState
from .steps import exit_run, move_stage, retry_send, run_from
from .turn import Turn, stable_id

Catalogue = Mapping[str, Mapping[int, CompiledJourney]]
_CHANNELS = frozenset(c.value for c in Channel)
_AFTER_EXIT = frozenset({"after_exit", "always"})
_WHILE_ACTIVE = frozenset({"always"})


def decide(
    state: ProspectState | None,
    prospect_id: str,
    event: Input,
    journeys: Catalogue,
    live: Mapping[str, int],
    now: datetime,
) -> Decision:
    """Apply ``event`` to the prospect; ``now`` must be timezone-aware.

    ``journeys``: journey id → version → compiled, every version that may have runs;
    ``live``: journey id → the version new entries use.
    """
    state = state or ProspectState(prospect_id=prospect_id)
    turn = Turn(
        prospect_id=prospect_id,
        event=event,
        now=now,
        traits=dict(state.traits),
        facts=apply_input(state.facts, event),
        sends=list(state.sends),
        suppressed=list(state.suppressed),
    )
    _absorb(turn, event)
    runs = dict(state.runs)
    for journey_id in sorted(set(runs) | set(live)):
        previous = runs.get(journey_id)
        if previous is None or previous.status != "active":
            again = None if previous is None else _AFTER_EXIT
            if (entering := _entering(turn, journeys, live, journey_id, again)) is not None:
                runs[journey_id] = _start(turn, entering, previous)
            continue
        if (entering := _entering(turn, journeys, live, journey_id, _WHILE_ACTIVE)) is not None:
            # The entry event again while a run is active: that run ends, a new one starts.
            if previous.waiting is not None:
                turn.cancelled.append(previous.waiting.timer_id)
            ended = exit_run(turn, previous, "reentered")
            runs[journey_id] = _start(turn, entering, ended)
            continue
        compiled = journeys.get(journey_id, {}).get(previous.version)
        if compiled is not None and compiled.exit_on_retire:
            if previous.waiting is not None:
                turn.cancelled.append(previous.waiting.timer_id)
            runs[journey_id] = exit_run(turn, previous, "retired")
        elif compiled is not None:  # a version no longer loaded cannot move
            runs[journey_id] = _resume(turn, compiled, _goals(turn, compiled, previous))
    new_state = replace(
        state,
        {
            "prospect_id": prospect_id,
            "traits": turn.traits,
            "facts": turn.facts,
            "runs": runs,
            "sends": timing.prune_sends(turn.sends, now, _cap_window(journeys)),
            "suppressed": turn.suppressed,
            "updated_at": now,
        },
    )
    return Decision(
        state=new_state,
        commands=turn.commands,
        timers=turn.timers,
        cancelled_timers=turn.cancelled,
        transitions=turn.transitions,
    )


def _absorb(turn: Turn, event: Input) -> None:
    """Traits and suppressions from the input itself."""
    if isinstance(event, IdentifyEvent):
        for key, value in event.traits.items():
            if value is None:
                turn.traits.pop(key, None)
            else:
                turn.traits[key] = value
    if isinstance(event, TouchpointEvent) and event.type is TouchpointType.UNSUBSCRIBED:
        named = event.properties.get("channel")
        channel = named if isinstance(named, str) and named in _CHANNELS else event.channel.value
        if channel not in turn.suppressed:
            turn.suppressed.append(channel)


def _entering(
    turn: Turn,
    journeys: Catalogue,
    live: Mapping[str, int],
    journey_id: str,
    again: frozenset[str] | None,
) -> CompiledJourney | None:
    """The live version when the input is its entry event for this prospect, else None.

    ``again``: the re-entry policies that let the prospect in again (None: a first run).
    """
    event = turn.event
    version = live.get(journey_id)
    compiled = journeys.get(journey_id, {}).get(version) if version is not None else None
    if compiled is None or not isinstance(event, TouchpointEvent):
        return None
    entry = compiled.journey.entry
    if again is not None and entry.reentry not in again:
        return None
    if not event_matches(entry.event, event):
        return None
    # What conditions see is worth computing only for the conditions there are.
    if entry.when is not None or compiled.journey.persona.when is not None:
        facts = turn.conditions()
        if not (compiled.entry(facts) and compiled.persona(facts)):
            return None
    return compiled


def _start(turn: Turn, compiled: CompiledJourney, previous: RunState | None) -> RunState:
    """A new run of ``compiled`` (the prospect's first, or the one after ``previous``)."""
    number = previous.number + 1 if previous is not None else 1
    run = RunState(
        run_id=stable_id(turn.prospect_id, compiled.id, number),
        journey=compiled.id,
        version=compiled.version,
        persona=compiled.journey.persona.id,
        stage=compiled.first_stage,
        entered_at=turn.now,
        stage_entered_at=turn.now,
        number=number,
    )
    turn.emit(run, "entered", None, run.stage)
    run = _goals(turn, compiled, run)
    return run_from(turn, compiled, run, compiled.journey.first_step)


def _goals(turn: Turn, compiled: CompiledJourney, run: RunState) -> RunState:
    """Goals the event reaches move the stage, wherever the run is in the tree."""
    event = turn.event
    if not isinstance(event, TouchpointEvent) or not compiled.goals:
        return run
    facts = turn.conditions()
    for goal, holds in compiled.goals:
        if (
            event_matches(goal.event, event)
            and holds(facts)
            and compiled.moves(run.stage, goal.stage)
        ):
            run = move_stage(turn, run, goal.stage, "goal")
    return run


def _resume(turn: Turn, compiled: CompiledJourney, run: RunState) -> RunState:
    """A paused run goes on when its own timer fires or the awaited event comes."""
    waiting, event = run.waiting, turn.event
    if waiting is None:
        return run
    step = compiled.steps[waiting.step]
    if isinstance(event, TimerFired):
        if event.timer_id != waiting.timer_id or event.run_id != run.run_id:
            return run  # stale: a timer of a wait this run already left
        run = replace(run, {"waiting": None})
        if isinstance(step, SendStep):
            return retry_send(turn, compiled, run, step)
        if isinstance(step, WaitForStep):
            return run_from(turn, compiled, run, step.on_timeout)
        assert isinstance(step, WaitStep)
        return run_from(turn, compiled, run, step.next or compiled.following(step.id))
    if not isinstance(event, TouchpointEvent) or not isinstance(step, WaitForStep):
        return run
    awaited = step.wait_for
    if not event_matches(awaited.event, event):
        return run
    if not compiled.predicates[step.id][0](turn.conditions()):
        return run
    turn.cancelled.append(waiting.timer_id)
    run = replace(run, {"waiting": None})
    return run_from(turn, compiled, run, step.next or compiled.following(step.id))


def _cap_window(journeys: Catalogue) -> timedelta:
    """How far back sends matter: the longest frequency-cap window of any journey."""
    windows = [
        cap.per
        for versions in journeys.values()
        for compiled in versions.values()
        if (cap := compiled.journey.policies.frequency_cap) is not None
    ]
    return max(windows, default=timedelta(days=1))
