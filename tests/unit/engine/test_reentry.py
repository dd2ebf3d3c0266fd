"""Re-entry policies: the entry event again while a run waits, and after it exited."""

from __future__ import annotations

from uuid import uuid5

import pytest

from services.orchestrator.engine.turn import NAMESPACE

from . import Prospect, sent
from .test_engine import journey

PAUSED = """
- id: hello
  send: {content: hello}
- id: pause
  wait: 1d
- id: bye
  send: {content: bye}
"""


def prospect(reentry: str) -> Prospect:
    return Prospect.of(journey(PAUSED, entry=f"{{event: form_submitted, reentry: {reentry}}}"))


@pytest.mark.parametrize("reentry", ["never", "after_exit"])
def test_the_entry_event_while_a_run_waits_changes_nothing(reentry: str) -> None:
    p = prospect(reentry)
    [timer] = p.touch("form_submitted").timers
    again = p.touch("form_submitted")
    assert (again.commands, again.transitions, again.timers) == ([], [], [])
    assert again.cancelled_timers == []
    run = p.current.runs["j"]
    assert (run.number, run.status, run.step) == (1, "active", "pause")
    assert sent(p.fire(timer)) == ["bye"]  # the first run goes on as if nothing came


def test_always_the_entry_event_while_a_run_waits_exits_it_and_starts_a_new_one() -> None:
    p = prospect("always")
    first = p.touch("form_submitted")
    [old_timer] = first.timers
    old_run = p.current.runs["j"].run_id
    again = p.touch("form_submitted")
    reasons = [(t.reason, t.run_id) for t in again.transitions[:2]]
    new_run = uuid5(NAMESPACE, "p-1:j:2")
    assert reasons == [("exited", old_run), ("entered", new_run)]
    assert again.transitions[0].exit_reason == "reentered"
    assert again.transitions[0].from_stage is not None
    assert again.cancelled_timers == [old_timer.timer_id]
    assert sent(again) == ["hello"]
    assert again.commands[0].command_id != first.commands[0].command_id
    [new_timer] = again.timers
    assert new_timer.run_id == new_run
    # Still one active run per prospect and journey: the new one.
    run = p.current.runs["j"]
    assert (run.run_id, run.number, run.status, run.step) == (new_run, 2, "active", "pause")
    # The old run's timer, had it fired anyway, is stale.
    stale = p.fire(old_timer)
    assert (stale.commands, stale.transitions) == ([], [])
    assert sent(p.fire(new_timer)) == ["bye"]
    assert p.current.runs["j"].status == "exited"
    assert p.current.runs["j"].exit_reason == "completed"


@pytest.mark.parametrize(
    ("reentry", "enters"), [("never", False), ("after_exit", True), ("always", True)]
)
def test_the_entry_event_after_the_run_exited(reentry: str, enters: bool) -> None:
    p = prospect(reentry)
    [timer] = p.touch("form_submitted").timers
    p.fire(timer)
    assert p.current.runs["j"].status == "exited"
    again = p.touch("form_submitted")
    if not enters:
        assert (again.commands, again.transitions) == ([], [])
        assert p.current.runs["j"].number == 1
        return
    assert [t.reason for t in again.transitions][:1] == ["entered"]
    assert "exited" not in [t.reason for t in again.transitions]
    assert sent(again) == ["hello"]
    run = p.current.runs["j"]
    assert (run.number, run.status, run.run_id) == (2, "active", uuid5(NAMESPACE, "p-1:j:2"))


def test_always_needs_the_entry_conditions_to_end_the_active_run() -> None:
    c = journey(
        PAUSED,
        entry="{event: form_submitted, reentry: always, when: {prop: form, eq: demo}}",
    )
    p = Prospect.of(c)
    p.touch("form_submitted", {"form": "demo"})
    other = p.touch("form_submitted", {"form": "newsletter"})
    assert (other.commands, other.transitions, other.cancelled_timers) == ([], [], [])
    assert p.current.runs["j"].number == 1
