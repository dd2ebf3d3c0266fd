"""Properties of the engine over random inputs: events, identifies, outcomes, timer fires
(due, early, stale or repeated) and a new journey version published in the middle."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from uuid import UUID

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from services.orchestrator.engine import (
    CompiledJourney,
    Decision,
    Input,
    ProspectState,
    TimerRequest,
)
from services.orchestrator.journey.model import SendStep, WaitForStep
from shared.contract import Channel, DeliveryStatus, TimerFired, TouchpointType

from . import NOW, Prospect, compiled

VIDEO = """
journey: video
title: Video nurture
persona: {id: it-manager}
entry: {event: form_submitted, reentry: after_exit}
goals:
  - {event: purchase, stage: customer}
  - {event: page_view, stage: visitor}
  - {event: webinar_attended, stage: prospect}
policies:
  quiet_hours: {start: "22:00", end: "07:00"}
steps:
  - id: send-video
    send: {content: demo-%(v)s, type: video}
    map: {stage: contact}
  - id: watch
    wait_for: {event: video_progress, when: {prop: percent, gte: 100}, timeout: 2d}
    next: invite
    on_timeout: how-far
  - id: how-far
    branch:
      - when: {fact: video_max_percent.demo, gte: 50}
        next: summary
      - when: {fact: video_max_percent.demo, gte: 25}
        next: resend
    else: reminder
  - {id: reminder, send: {content: demo-reminder}, next: watch-again}
  - {id: resend, send: {content: demo-short, type: video}, next: watch-again}
  - {id: summary, send: {content: summary, type: pdf}, next: done}
  - id: watch-again
    wait_for: {event: video_progress, timeout: 1d}
    next: how-far
    on_timeout: done
  - id: invite
    send: {content: webinar, type: webinar_invite}
    map: {stage: prospect}
  - {id: done, exit: completed}
"""

NURTURE = """
journey: nurture
title: Nurture
persona: {id: smb-owner}
entry: {event: email_opened}
policies:
  frequency_cap: {max_sends: 2, per: 1d}
steps:
  - id: ab
    split:
      - {variant: a, weight: 1, next: send-a}
      - {variant: b, weight: 2, next: send-b}
  - id: send-a
    send:
      content: tip-a
      variants: [{name: x, content: tip-x}, {name: y, content: tip-y, weight: 2}]
    next: pause
  - {id: send-b, send: {content: tip-b}, next: pause}
  - {id: pause, wait: 6h, map: {stage: visitor}}
  - id: check
    branch:
      - when: {fact: count.email_clicked, gte: 2}
        next: bye
    else: again
  - {id: again, goto: ab}
  - {id: bye, exit: engaged, map: {stage: contact}}
"""

PROMO = """
journey: promo
title: Promotion
persona: {id: anyone, when: {trait: timezone, exists: true}}
entry: {event: "custom:Promo", reentry: always}
steps:
  - {id: tag, update: {score: 1, set: {promo: true}}}
  - id: pick
    split: [{variant: p, weight: 1, next: offer}, {variant: q, weight: 1, next: offer-q}]
  - {id: offer, send: {content: offer}, next: hold}
  - {id: offer-q, send: {content: offer-q}, next: hold}
  - id: hold
    wait_for: {event: purchase, timeout: 3h}
    next: thanks
    on_timeout: end
  - {id: thanks, send: {content: thanks}, map: {stage: customer}, next: end}
  - {id: end, exit: completed}
"""

CATALOGUE = (
    compiled(VIDEO % {"v": 1}, 1),
    compiled(VIDEO % {"v": 2}, 2),
    compiled(NURTURE),
    compiled(PROMO),
)
TOUCHES = (
    TouchpointType.FORM_SUBMITTED,
    TouchpointType.VIDEO_PROGRESS,
    TouchpointType.EMAIL_OPENED,
    TouchpointType.EMAIL_CLICKED,
    TouchpointType.PURCHASE,
    TouchpointType.PAGE_VIEW,
    TouchpointType.WEBINAR_ATTENDED,
    TouchpointType.UNSUBSCRIBED,
    TouchpointType.CUSTOM,
)
ZONES = ("Europe/Madrid", "America/New_York", "Asia/Tokyo", "Nowhere/Special")
KINDS = ("touch",) * 5 + ("fire",) * 4 + ("clock", "identify", "publish", "outcome")

actions = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 1000)), max_size=40)
prospects = st.sampled_from(["lead-1", "lead-2", "ana@example.com"])
examples = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Trace:
    """What happened: per input, the state before it, the live versions, the decision."""

    prospect: Prospect
    before: list[ProspectState | None] = field(default_factory=list)
    lives: list[dict[str, int]] = field(default_factory=list)

    @property
    def steps(self) -> list[tuple[ProspectState | None, Input, Decision]]:
        p = self.prospect
        return list(zip(self.before, p.inputs, p.decisions, strict=True))


def simulate(prospect_id: str, script: list[tuple[str, int]]) -> Trace:
    p = Prospect.of(CATALOGUE[0], *CATALOGUE[2:], prospect_id=prospect_id)
    trace = Trace(p)
    timers: list[TimerRequest] = []
    for kind, n in script:
        before, fed = p.state, len(p.decisions)
        if kind == "touch":
            touch = TOUCHES[n % len(TOUCHES)]
            percent, content = (25, 50, 75, 100)[n // 9 % 4], ("demo", "x")[n // 36 % 2]
            name = "Promo" if touch is TouchpointType.CUSTOM else None
            channel = Channel.EMAIL if n % 2 else Channel.WEB  # unsubscribing from email or web
            p.touch(touch, {"percent": percent, "content": content}, name=name, channel=channel)
        elif kind == "fire" and timers:
            p.fire(timers[n % len(timers)])  # due, early, stale or again: all happen
        elif kind == "clock":
            p.now += timedelta(minutes=7 * n)
        elif kind == "identify":
            p.identify(timezone=ZONES[n % len(ZONES)], email="lead@example.com")
        elif kind == "publish":
            p.publish(CATALOGUE[1])
        elif kind == "outcome":
            p.outcome(list(DeliveryStatus)[n % len(DeliveryStatus)])
        if len(p.decisions) > fed:
            trace.before.append(before)
            trace.lives.append(dict(p.live))
            timers += p.decisions[-1].timers
    return trace


def _compiled(journey: str, version: int) -> CompiledJourney:
    return {(c.id, c.version): c for c in CATALOGUE}[(journey, version)]


@examples
@given(prospects, actions)
def test_nothing_is_sent_by_a_run_after_it_exited(
    prospect_id: str, script: list[tuple[str, int]]
) -> None:
    for before, _, decision in simulate(prospect_id, script).steps:
        entered = {t.journey for t in decision.transitions if t.reason == "entered"}
        for command in decision.commands:
            previous = before.runs.get(command.journey) if before else None
            if previous is not None and previous.status == "exited":
                assert command.journey in entered


@examples
@given(prospects, actions)
def test_splits_and_variants_are_stable_for_a_prospect(
    prospect_id: str, script: list[tuple[str, int]]
) -> None:
    seen: dict[tuple[str, str], str] = {}
    for _, _, decision in simulate(prospect_id, script).steps:
        for t in decision.transitions:
            if t.variant is not None:
                assert seen.setdefault((t.journey, t.step or ""), t.variant) == t.variant
        for command in decision.commands:
            if command.variant is not None:
                key = (command.journey, command.step)
                assert seen.setdefault(key, command.variant) == command.variant


@examples
@given(prospects, actions)
def test_a_wait_for_resolves_exactly_once(prospect_id: str, script: list[tuple[str, int]]) -> None:
    resolved: dict[UUID, str] = {}
    for before, event, decision in simulate(prospect_id, script).steps:
        fired = event.timer_id if isinstance(event, TimerFired) else None
        if fired in resolved:
            assert decision.transitions == []
        for journey, run in (before.runs if before else {}).items():
            waiting = run.waiting
            after = decision.state.runs[journey]
            if waiting is None or waiting.kind != "wait_for":
                continue
            left = after.run_id != run.run_id or after.waiting != waiting
            by_event = waiting.timer_id in decision.cancelled_timers
            by_timer = fired == waiting.timer_id
            assert left == (by_event or by_timer)
            assert not (by_event and by_timer)
            if not left:
                continue
            assert waiting.timer_id not in resolved
            own = [t for t in decision.transitions if t.run_id == run.run_id]
            resumed = [t.step for t in own if t.reason == "step"]
            if own[0].reason == "exited":
                # Left without resuming: the run ended (the entry event again, with
                # reentry: always), its timeout cancelled; neither path is taken.
                assert by_event
                assert own[0].exit_reason == "reentered"
                assert resumed == []
                resolved[waiting.timer_id] = "exited"
                continue
            resolved[waiting.timer_id] = "event" if by_event else "timeout"
            step = _compiled(journey, run.version).steps[waiting.step]
            assert isinstance(step, WaitForStep)
            assert resumed[0] == (step.next if by_event else step.on_timeout)


@examples
@given(prospects, actions)
def test_stages_only_move_forward(prospect_id: str, script: list[tuple[str, int]]) -> None:
    for before, _, decision in simulate(prospect_id, script).steps:
        for t in decision.transitions:
            order = _compiled(t.journey, t.journey_version).stage_order
            if t.reason in ("advanced", "goal"):
                assert t.from_stage is not None
                assert t.to_stage is not None
                assert order[t.to_stage] > order[t.from_stage]
        for journey, run in (before.runs if before else {}).items():
            after = decision.state.runs[journey]
            order = _compiled(journey, run.version).stage_order
            if after.run_id == run.run_id and run.stage and after.stage:
                assert order[after.stage] >= order[run.stage]


@examples
@given(prospects, actions)
def test_decide_is_deterministic_and_state_round_trips_through_json(
    prospect_id: str, script: list[tuple[str, int]]
) -> None:
    trace = simulate(prospect_id, script)
    replay = Prospect(trace.prospect.journeys, {}, prospect_id)
    for (before, event, decision), live in zip(trace.steps, trace.lives, strict=True):
        stored = (
            None if before is None else ProspectState.model_validate_json(before.model_dump_json())
        )
        assert stored == before
        replay.state, replay.live = stored, live
        replay.now = decision.state.updated_at or NOW
        assert replay.feed(event) == decision
        for timer in decision.timers:
            assert timer.due_at > replay.now


@examples
@given(prospects, actions)
def test_what_the_engine_builds_unvalidated_equals_its_validated_form(
    prospect_id: str, script: list[tuple[str, int]]
) -> None:
    # Commands, transitions and runs are built from typed values without validation:
    # each must hold every field, in order, and validate (and encode) to itself.
    for _, _, decision in simulate(prospect_id, script).steps:
        made: list[BaseModel] = [*decision.commands, *decision.transitions]
        made += [decision.state, *decision.state.runs.values()]
        for model in made:
            kind = type(model)
            assert list(model.__dict__) == list(kind.model_fields)
            validated = kind.model_validate(model.model_dump())
            assert validated == model
            assert validated.model_dump_json() == model.model_dump_json()
            assert kind.model_validate_json(model.model_dump_json()) == model


@examples
@given(prospects, actions)
def test_every_send_step_records_what_it_did_and_only_sent_ones_make_commands(
    prospect_id: str, script: list[tuple[str, int]]
) -> None:
    for _, _, decision in simulate(prospect_id, script).steps:
        checks = [t for t in decision.transitions if t.send_outcome is not None]
        sent = [(t.journey, t.step) for t in checks if t.send_outcome == "sent"]
        assert sent == [(c.journey, c.step) for c in decision.commands]
        for t in checks:
            assert t.reason in ("step", "retried")
            assert (t.held_by is None) == (t.send_outcome == "sent")
            assert (t.deferred_until is not None) == (t.send_outcome == "deferred")
        for t in decision.transitions:
            if t.reason == "step" and t.send_outcome is None:
                step = _compiled(t.journey, t.journey_version).steps[t.step or ""]
                assert not isinstance(step, SendStep)
