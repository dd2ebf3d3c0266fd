"""A send a policy holds back is recorded on its transitions: the step's own, then one
``retried`` transition each time a deferred send is checked again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.orchestrator.engine import Decision
from shared.contract import Channel, StageTransition

from . import Prospect, sent
from .test_engine import CAPPED, QUIET, SEND_EXIT, journey


def send_records(decision: Decision) -> list[tuple[str, str | None, str | None, str | None]]:
    """(reason, step, outcome, held by) of every transition that says what a send did."""
    return [
        (t.reason, t.step, t.send_outcome, t.held_by)
        for t in decision.transitions
        if t.send_outcome is not None
    ]


def only(decision: Decision, reason: str, step: str) -> StageTransition:
    [found] = [t for t in decision.transitions if t.reason == reason and t.step == step]
    return found


def test_a_send_that_goes_says_so_and_other_steps_say_nothing() -> None:
    p = Prospect.of(journey(SEND_EXIT))
    decision = p.touch("form_submitted")
    assert send_records(decision) == [("step", "hello", "sent", None)]
    hello = only(decision, "step", "hello")
    assert hello.deferred_until is None
    bye = only(decision, "step", "bye")
    assert (bye.send_outcome, bye.held_by) == (None, None)


def test_quiet_hours_deferral_is_on_the_step_and_its_retry_on_a_retried_transition() -> None:
    p = Prospect.of(journey(SEND_EXIT, extra=QUIET % "defer"))
    p.now = datetime(2025, 3, 3, 21, 30, tzinfo=UTC)  # 22:30 in Madrid
    decision = p.touch("form_submitted")
    morning = datetime(2025, 3, 4, 7, 0, tzinfo=UTC)  # 08:00 in Madrid
    assert send_records(decision) == [("step", "hello", "deferred", "quiet_hours")]
    assert only(decision, "step", "hello").deferred_until == morning
    [timer] = decision.timers
    fired = p.fire(timer)
    assert send_records(fired) == [("retried", "hello", "sent", None)]
    retried = only(fired, "retried", "hello")
    # The same stage before and after: a retry moves nobody in the funnel.
    assert retried.from_stage == retried.to_stage == p.current.runs["j"].stage
    assert retried.occurred_at == morning
    assert sent(fired) == ["hello"]


def test_quiet_hours_skip_is_on_the_step_transition() -> None:
    p = Prospect.of(journey(SEND_EXIT, extra=QUIET % "skip"))
    p.now = datetime(2025, 3, 3, 23, 0, tzinfo=UTC)
    decision = p.touch("form_submitted")
    assert decision.commands == []
    assert send_records(decision) == [("step", "hello", "skipped", "quiet_hours")]
    assert only(decision, "step", "hello").deferred_until is None


def test_a_suppressed_channel_is_a_skip_held_by_suppressed() -> None:
    p = Prospect.of(journey(SEND_EXIT))
    p.touch("unsubscribed", channel=Channel.EMAIL)
    decision = p.touch("form_submitted")
    assert send_records(decision) == [("step", "hello", "skipped", "suppressed")]


def test_frequency_cap_skip_is_recorded_for_every_capped_send() -> None:
    cap = "policies:\n  frequency_cap: {max_sends: 1, per: 1d, when_capped: skip}\n"
    p = Prospect.of(journey(CAPPED, extra=cap))
    decision = p.touch("form_submitted")
    assert sent(decision) == ["one"]
    assert send_records(decision) == [
        ("step", "one", "sent", None),
        ("step", "two", "skipped", "frequency_cap"),
        ("step", "three", "skipped", "frequency_cap"),
    ]


def test_a_deferral_names_the_policy_that_sets_the_later_time() -> None:
    extra = """
    policies:
      frequency_cap: {max_sends: 1, per: 12h}
      quiet_hours: {start: "21:00", end: "08:00"}
    """
    p = Prospect.of(journey(CAPPED, extra=extra))
    p.now = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    first = p.touch("form_submitted")
    midnight = datetime(2025, 3, 4, 0, 0, tzinfo=UTC)
    assert send_records(first) == [
        ("step", "one", "sent", None),
        ("step", "two", "deferred", "frequency_cap"),
    ]
    assert only(first, "step", "two").deferred_until == midnight
    [timer] = first.timers
    # At midnight the cap frees a send but the quiet hours hold it until 08:00.
    second = p.fire(timer)
    assert send_records(second) == [("retried", "two", "deferred", "quiet_hours")]
    assert only(second, "retried", "two").deferred_until == midnight + timedelta(hours=8)
    [timer] = second.timers
    third = p.fire(timer)
    assert send_records(third)[0] == ("retried", "two", "sent", None)
    assert sent(third) == ["two"]


def test_a_deferred_send_skipped_on_its_retry_says_why() -> None:
    cap = "policies:\n  frequency_cap: {max_sends: 1, per: 1d}\n"
    p = Prospect.of(journey(CAPPED, extra=cap))
    [timer] = p.touch("form_submitted").timers
    p.touch("unsubscribed", channel=Channel.EMAIL)
    fired = p.fire(timer)
    assert fired.commands == []
    assert send_records(fired)[0] == ("retried", "two", "skipped", "suppressed")
    assert p.current.runs["j"].skipped["two"] == "suppressed"


def test_an_exit_transition_carries_the_exit_reason() -> None:
    p = Prospect.of(journey(SEND_EXIT))
    decision = p.touch("form_submitted")
    [exited] = [t for t in decision.transitions if t.reason == "exited"]
    assert exited.exit_reason == "done"
    assert all(t.exit_reason is None for t in decision.transitions if t.reason != "exited")
