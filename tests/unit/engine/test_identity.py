from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.orchestrator.engine import ProspectState, RunState
from services.orchestrator.engine.facts import merge_facts
from services.orchestrator.engine.identity import adopt
from tests.unit.engine import Prospect
from tests.unit.engine.test_engine import journey
from tests.unit.engine.test_reentry import PAUSED

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _run(journey: str, status: str = "active") -> RunState:
    return RunState(
        run_id=uuid.uuid4(), journey=journey, version=1, persona="p", status=status, entered_at=T0
    )


def test_active_runs_move_to_the_user_unless_it_has_its_own() -> None:
    a, b, c = _run("a"), _run("b"), _run("c", "exited")
    theirs = _run("b")
    anonymous = ProspectState(
        prospect_id="anon",
        runs={"a": a, "b": b, "c": c},
        traits={"locale": "en", "x": 1},
        facts={"count.page_view": 2, "video_max_percent": 50},
        suppressed=["sms"],
    )
    user = ProspectState(
        prospect_id="u",
        runs={"b": theirs},
        traits={"x": 2},
        facts={"count.page_view": 1, "video_max_percent": 75},
    )
    new_user, left, moved = adopt(user, anonymous, "u")
    assert moved == [a.run_id]
    assert new_user is not None
    assert left is not None
    assert new_user.runs == {"a": a, "b": theirs}
    assert new_user.traits == {"locale": "en", "x": 2}
    assert new_user.facts == {"count.page_view": 3, "video_max_percent": 75}
    assert new_user.suppressed == ["sms"]
    assert left.runs == {"b": b, "c": c}
    # Adopting again moves nothing.
    assert adopt(new_user, left, "u")[2] == []


def test_a_user_seen_for_the_first_time_gets_the_runs() -> None:
    a = _run("a")
    new_user, left, moved = adopt(None, ProspectState(prospect_id="anon", runs={"a": a}), "u")
    assert moved == [a.run_id]
    assert new_user is not None
    assert (new_user.prospect_id, new_user.runs) == ("u", {"a": a})
    assert left is not None
    assert left.runs == {}
    assert adopt(None, None, "u") == (None, None, [])


def test_facts_add_counts_and_keep_maxima() -> None:
    older = {"count.email_opened": 2, "score": 5, "last_event_at": "2026-05-01T10:00:00+00:00"}
    newer = {
        "count.email_opened": 1,
        "score": 10,
        "last_event_at": "2026-05-02T10:00:00+00:00",
        "negative_feedback": 1,
    }
    assert merge_facts(older, newer) == {
        "count.email_opened": 3,
        "score": 15,
        "last_event_at": "2026-05-02T10:00:00+00:00",
        "negative_feedback": 1,
    }


def test_a_run_moved_to_a_user_is_numbered_after_the_users_own() -> None:
    """The user's next run never takes an id (nor command ids) of an earlier run."""
    compiled = journey(PAUSED, entry="{event: form_submitted, reentry: always}")
    user = Prospect.of(compiled, prospect_id="u")
    user.touch("form_submitted")  # run 1
    runs = {user.current.runs["j"].run_id}
    second = user.touch("form_submitted")  # run 1 exits (reentered), run 2 starts
    runs.add(user.current.runs["j"].run_id)
    [timer] = second.timers
    user.fire(timer)  # run 2 completes
    assert user.current.runs["j"].status == "exited"

    anonymous = Prospect.of(compiled, prospect_id="anon")  # the same person, another device
    anonymous.touch("form_submitted")  # the anonymous prospect's run 1
    merged, _, moved = adopt(user.state, anonymous.state, "u")
    assert moved
    assert merged is not None
    assert merged.runs["j"].number == 3
    user.state = merged
    again = user.touch("form_submitted")  # reentry: the user's run 4
    assert user.current.runs["j"].number == 4
    assert user.current.runs["j"].run_id not in runs
    assert again.commands[0].command_id != second.commands[0].command_id
    assert again.timers[0].timer_id != timer.timer_id
