"""The engine, step type by step type: what one input does to one prospect."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from textwrap import dedent, indent
from uuid import uuid5

import pytest

from services.orchestrator.engine import CompiledJourney
from services.orchestrator.engine.turn import NAMESPACE
from shared.contract import Channel, ContentType, DeliveryStatus, TouchpointType

from . import NOW, Prospect, compiled, sent, steps_of


def journey(
    steps: str,
    *,
    name: str = "j",
    version: int = 1,
    entry: str = "{event: form_submitted}",
    persona: str = "{id: someone}",
    extra: str = "",
) -> CompiledJourney:
    header = f"journey: {name}\ntitle: Test\npersona: {persona}\nentry: {entry}\n"
    body = indent(dedent(steps).strip("\n"), "  ")
    return compiled(f"{header}{dedent(extra)}\nsteps:\n{body}\n", version)


SEND_EXIT = """
- id: hello
  send: {content: hello}
- id: bye
  exit: done
"""

VIDEO = journey(
    """
    - id: send-video
      send: {content: demo-video, type: video}
      map: {stage: contact}
    - id: watch
      wait_for:
        event: video_progress
        when: {prop: percent, gte: 100}
        timeout: 3d
      next: webinar
      on_timeout: how-far
    - id: how-far
      branch:
        - when: {fact: video_max_percent.demo-video, gte: 25}
          next: summary
      else: reminder
    - id: reminder
      send: {content: demo-video-again}
      next: done
    - id: summary
      send: {content: summary-pdf, type: pdf}
      next: done
    - id: webinar
      send: {content: webinar, type: webinar_invite}
      map: {stage: prospect}
    - id: done
      exit: completed
    """,
    name="video",
    extra="""
    goals:
      - {event: purchase, stage: customer}
      - {event: page_view, stage: visitor}
    """,
)


# ---------------------------------------------------------------- prospect data


def test_identify_merges_traits_and_null_removes_one() -> None:
    p = Prospect.of(VIDEO)
    p.identify(email="ana@example.com", role="cto")
    p.identify(role=None, name="Ana")
    assert p.current.traits == {"email": "ana@example.com", "name": "Ana"}
    assert p.current.runs == {}


def test_touchpoints_update_the_documented_facts() -> None:
    p = Prospect.of(VIDEO)
    p.touch("email_opened")
    p.touch("email_opened")
    p.touch("video_progress", {"percent": 75, "content": "intro"})
    p.touch("video_progress", {"percent": "25", "content": "demo"})
    p.touch("video_progress", {"percent": "lots", "content": "demo"})
    p.touch("feedback", emotion="negative")
    p.touch("feedback", {"emotion": "positive"})
    p.now = NOW + timedelta(hours=1)
    p.touch("page_view")
    assert p.current.facts == {
        "count.email_opened": 2,
        "count.video_progress": 3,
        "count.feedback": 2,
        "count.page_view": 1,
        "video_max_percent": 75,
        "video_max_percent.intro": 75,
        "video_max_percent.demo": 25,
        "negative_feedback": 1,
        "last_event_at": (NOW + timedelta(hours=1)).isoformat(),
    }


def test_delivery_outcomes_are_counted_and_start_nothing() -> None:
    p = Prospect.of(journey(SEND_EXIT, entry="{event: custom}"))
    decision = p.outcome(DeliveryStatus.BOUNCED)
    p.outcome(DeliveryStatus.SENT)
    assert p.current.facts == {"count.delivery_bounced": 1, "count.delivery_sent": 1}
    assert decision.transitions == []
    assert p.current.runs == {}


def test_unsubscribed_suppresses_the_channel_named_or_the_events_own() -> None:
    p = Prospect.of(VIDEO)
    p.touch("unsubscribed", {"channel": "email"}, channel=Channel.WEB)
    p.touch("unsubscribed", channel=Channel.PHONE)
    p.touch("unsubscribed", {"channel": "email"})
    assert p.current.suppressed == ["email", "phone"]


def test_conditions_read_facts_by_their_dotted_names() -> None:
    c = journey(
        """
        - id: check
          branch:
            - when: {all: [{fact: count.email_opened, gte: 2}, {fact: video_max_percent, gte: 50}]}
              next: engaged
            - when: {fact: video_max_percent.intro, exists: true}
              next: some
          else: cold
        - {id: engaged, exit: engaged}
        - {id: some, exit: some}
        - {id: cold, exit: cold}
        """,
        entry="{event: call}",
    )
    p = Prospect.of(c)
    p.touch("video_progress", {"percent": 75, "content": "intro"})
    p.touch("call")
    assert p.current.runs["j"].exit_reason == "some"
    p = Prospect.of(c)
    p.touch("email_opened")
    p.touch("email_opened")
    p.touch("video_progress", {"percent": 50})
    p.touch("call")
    assert p.current.runs["j"].exit_reason == "engaged"
    p = Prospect.of(c)
    p.touch("call")
    assert p.current.runs["j"].exit_reason == "cold"


# ---------------------------------------------------------------- entry


def test_entry_starts_a_run_with_a_deterministic_id() -> None:
    p = Prospect.of(VIDEO, prospect_id="lead-7")
    decision = p.touch("form_submitted")
    run = p.current.runs["video"]
    assert run.run_id == uuid5(NAMESPACE, "lead-7:video:1")
    assert (run.status, run.step, run.stage, run.number) == ("active", "watch", "contact", 1)
    entered = decision.transitions[0]
    assert (entered.reason, entered.from_stage, entered.to_stage) == ("entered", None, "contact")
    assert entered.persona == "someone"
    assert entered.cause_event_id == p.inputs[-1].event_id
    assert entered.occurred_at == NOW
    assert steps_of(decision) == ["send-video", "watch"]


def test_a_run_starts_in_the_first_stage_unless_the_first_step_says_otherwise() -> None:
    p = Prospect.of(journey(SEND_EXIT))
    decision = p.touch("form_submitted")
    assert decision.transitions[0].to_stage == "stranger"
    assert p.current.runs["j"].stage == "stranger"


def test_entry_needs_the_persona_and_the_entry_condition() -> None:
    c = journey(
        SEND_EXIT,
        persona="{id: cto, when: {trait: role, eq: cto}}",
        entry="{event: form_submitted, when: {prop: plan, ne: free}}",
    )
    p = Prospect.of(c)
    p.touch("form_submitted", {"plan": "pro"})
    assert p.current.runs == {}
    p.identify(role="cto")
    p.touch("form_submitted", {"plan": "free"})
    assert p.current.runs == {}
    p.touch("form_submitted", {"plan": "pro"})
    assert p.current.runs["j"].status == "exited"


def test_custom_entry_matches_the_event_name_as_sent() -> None:
    p = Prospect.of(journey(SEND_EXIT, entry='{event: "custom:Trial Started"}'))
    p.touch("custom", name="Trial Ended")
    assert p.current.runs == {}
    decision = p.touch("custom", name="Trial Started")
    assert sent(decision) == ["hello"]


def test_one_active_run_per_prospect_and_journey() -> None:
    p = Prospect.of(VIDEO)
    first = p.touch("form_submitted").commands
    again = p.touch("form_submitted")
    assert len(first) == 1
    assert again.commands == []
    assert again.transitions == []
    assert p.current.runs["video"].number == 1


@pytest.mark.parametrize(("reentry", "runs"), [("never", 1), ("after_exit", 3), ("always", 3)])
def test_reentry_policies(reentry: str, runs: int) -> None:
    p = Prospect.of(journey(SEND_EXIT, entry=f"{{event: form_submitted, reentry: {reentry}}}"))
    commands = [c for _ in range(3) for c in p.touch("form_submitted").commands]
    assert len(commands) == runs
    assert len({c.command_id for c in commands}) == runs
    assert p.current.runs["j"].number == runs
    assert p.current.runs["j"].run_id == uuid5(NAMESPACE, f"p-1:j:{runs}")


# ---------------------------------------------------------------- send


def test_send_issues_one_command_with_everything_delivery_needs() -> None:
    c = journey(
        """
        - id: welcome
          send:
            content: welcome
            type: pdf
            channel: email
            params: {discount: 10, subject: Hola}
        """,
        extra="default_locale: en\nlocale_trait: lang\n",
    )
    p = Prospect.of(c, prospect_id="lead-1")
    p.identify(email="ana@example.com", first_name="Ana", last_name="Ruiz", lang="es-MX")
    decision = p.touch("form_submitted")
    [command] = decision.commands
    run = p.current.runs["j"]
    assert command.command_id == uuid5(NAMESPACE, f"{run.run_id}:welcome:1")
    assert command.event_id == command.command_id
    assert (command.journey, command.journey_version, command.step) == ("j", 1, "welcome")
    assert (command.content, command.content_type, command.channel) == (
        "welcome",
        ContentType.PDF,
        Channel.EMAIL,
    )
    assert command.variant is None
    assert command.locale == "es"
    assert command.recipient == {
        "prospect_id": "lead-1",
        "email": "ana@example.com",
        "first_name": "Ana",
        "last_name": "Ruiz",
        "name": "Ana Ruiz",
    }
    assert command.params == {"discount": 10, "subject": "Hola"}
    assert command.issued_at == NOW
    assert p.current.sends == [NOW]
    assert (run.status, run.exit_reason) == ("exited", "completed")


@pytest.mark.parametrize(("trait", "locale"), [("en_GB", "en"), ("fr", "en"), (None, "en")])
def test_locale_falls_back_to_the_journeys_default(trait: str | None, locale: str) -> None:
    p = Prospect.of(journey(SEND_EXIT, extra="default_locale: en\n"))
    p.identify(locale=trait)
    assert p.touch("form_submitted").commands[0].locale == locale


VARIANTS = """
- id: hello
  send:
    content: hello
    variants:
      - {name: short, content: hello-short, weight: 1}
      - {name: long, content: hello-long, weight: 3}
"""


def test_content_variants_are_chosen_per_prospect_and_recorded() -> None:
    c = journey(VARIANTS, entry="{event: form_submitted, reentry: always}")
    chosen: dict[str, int] = {"short": 0, "long": 0}
    for n in range(200):
        p = Prospect.of(c, prospect_id=f"lead-{n}")
        [first] = p.touch("form_submitted").commands
        [second] = p.touch("form_submitted").commands
        assert first.variant is not None
        assert first.variant == second.variant
        assert first.content == f"hello-{first.variant}"
        assert p.current.runs["j"].variants == {"hello": first.variant}
        chosen[first.variant] += 1
    assert 20 < chosen["short"] < 80  # weights 1:3


# ---------------------------------------------------------------- wait, wait_for


def test_wait_for_a_duration_then_go_on() -> None:
    p = Prospect.of(journey("- {id: pause, wait: 2d}\n" + SEND_EXIT))
    decision = p.touch("form_submitted")
    [timer] = decision.timers
    run = p.current.runs["j"]
    assert timer.due_at == NOW + timedelta(days=2)
    assert timer.timer_id == uuid5(NAMESPACE, f"{run.run_id}:pause:1")
    assert run.waiting is not None
    assert (run.waiting.kind, run.waiting.timer_id) == ("wait", timer.timer_id)
    assert p.touch("email_opened").commands == []
    decision = p.fire(timer)
    assert sent(decision) == ["hello"]
    assert p.current.runs["j"].exit_reason == "done"
    assert p.fire(timer).transitions == []  # a timer fires at least once: the repeat is stale


@pytest.mark.parametrize(
    ("zone", "due"),
    [
        ("Europe/Madrid", datetime(2025, 3, 4, 8, 0, tzinfo=UTC)),  # Tue 09:00 CET
        ("America/New_York", datetime(2025, 3, 4, 14, 0, tzinfo=UTC)),  # Tue 09:00 EST
        ("Asia/Tokyo", datetime(2025, 3, 6, 0, 0, tzinfo=UTC)),  # Tue 09:00 JST is past: Thu
        ("Not/A_Zone", datetime(2025, 3, 4, 9, 0, tzinfo=UTC)),  # the default: UTC
    ],
)
def test_wait_until_a_local_time_on_given_days(zone: str, due: datetime) -> None:
    c = journey("- id: pause\n  wait: {time: '09:00', days: [tue, thu]}\n" + SEND_EXIT)
    p = Prospect.of(c)
    p.now = datetime(2025, 3, 4, 6, 0, tzinfo=UTC)  # a Tuesday
    p.identify(timezone=zone)
    [timer] = p.touch("form_submitted").timers
    assert timer.due_at == due


WAIT_FOR = """
- id: watch
  wait_for:
    event: email_clicked
    when: {prop: url, contains: pricing}
    timeout: 1d
  next: clicked
  on_timeout: late
- {id: clicked, send: {content: pricing}, next: end}
- {id: late, send: {content: reminder}}
- {id: end, exit: completed}
"""


def test_wait_for_resolved_by_the_awaited_event_cancels_its_timeout() -> None:
    p = Prospect.of(journey(WAIT_FOR))
    [timer] = p.touch("form_submitted").timers
    assert p.touch("email_clicked", {"url": "https://x/blog"}).transitions == []
    decision = p.touch("email_clicked", {"url": "https://x/pricing"})
    assert decision.cancelled_timers == [timer.timer_id]
    assert sent(decision) == ["pricing"]
    late = p.fire(timer)
    assert (late.commands, late.transitions) == ([], [])


def test_wait_for_times_out_once_and_later_events_change_nothing() -> None:
    p = Prospect.of(journey(WAIT_FOR))
    [timer] = p.touch("form_submitted").timers
    decision = p.fire(timer)
    assert sent(decision) == ["reminder"]
    assert steps_of(decision) == ["late", "end"]
    assert p.touch("email_clicked", {"url": "pricing"}).commands == []


def test_the_event_that_resolves_a_wait_for_counts_in_the_branch_after_it() -> None:
    p = Prospect.of(VIDEO)
    p.touch("form_submitted")
    decision = p.touch("video_progress", {"percent": 100, "content": "demo-video"})
    assert sent(decision) == ["webinar"]
    p = Prospect.of(VIDEO)
    [timer] = p.touch("form_submitted").timers
    p.touch("video_progress", {"percent": 25, "content": "demo-video"})
    assert sent(p.fire(timer)) == ["summary-pdf"]
    p = Prospect.of(VIDEO)
    [timer] = p.touch("form_submitted").timers
    p.touch("video_progress", {"percent": 75, "content": "other-video"})
    assert sent(p.fire(timer)) == ["demo-video-again"]


def test_a_timer_of_another_run_is_stale() -> None:
    c = journey("- {id: pause, wait: 1h}\n" + SEND_EXIT, entry="{event: call, reentry: always}")
    p = Prospect.of(c)
    [old] = p.touch("call").timers
    p.fire(old)
    [new] = p.touch("call").timers
    assert new.timer_id != old.timer_id
    assert p.fire(old).transitions == []
    assert sent(p.fire(new)) == ["hello"]


# ---------------------------------------------------------------- branch, split, update, goto, exit


def test_split_arms_are_stable_per_prospect_and_follow_the_weights() -> None:
    c = journey(
        """
        - id: ab
          split:
            - {variant: a, weight: 9, next: send-a}
            - {variant: b, weight: 1, next: send-b}
        - {id: send-a, send: {content: a}, next: end}
        - {id: send-b, send: {content: b}, next: end}
        - {id: end, exit: completed}
        """,
        entry="{event: form_submitted, reentry: after_exit}",
    )
    arms = []
    for n in range(100):
        p = Prospect.of(c, prospect_id=f"lead-{n}")
        decision = p.touch("form_submitted")
        [split] = [t for t in decision.transitions if t.step == "ab"]
        assert split.variant in ("a", "b")
        assert sent(decision) == [split.variant]
        assert p.current.runs["j"].variants == {"ab": split.variant}
        assert sent(p.touch("form_submitted")) == [split.variant]
        arms.append(split.variant)
    assert 75 < arms.count("a") < 100


def test_update_sets_and_removes_traits_and_adds_to_the_score() -> None:
    c = journey(
        """
        - {id: tag, update: {set: {lifecycle: lead, temp: null}, score: 5}}
        - {id: more, update: {score: 2.5}}
        """,
        entry="{event: form_submitted, reentry: always}",
    )
    p = Prospect.of(c)
    p.identify(temp="x", email="a@b.c")
    p.touch("form_submitted")
    p.touch("form_submitted")
    assert p.current.traits == {"email": "a@b.c", "lifecycle": "lead"}
    assert p.current.facts["score"] == 15


def test_goto_loops_through_a_wait_with_one_command_id_per_visit() -> None:
    c = journey(
        """
        - {id: nudge, send: {content: nudge}}
        - {id: pause, wait: 1d}
        - id: enough
          branch:
            - when: {fact: count.email_opened, gte: 1}
              next: end
          else: again
        - {id: again, goto: nudge}
        - {id: end, exit: engaged}
        """
    )
    p = Prospect.of(c)
    decision = p.touch("form_submitted")
    ids = [decision.commands[0].command_id]
    for _ in range(2):
        decision = p.fire(decision.timers[0])
        ids += [cmd.command_id for cmd in decision.commands]
    assert len(set(ids)) == 3
    assert p.current.runs["j"].visits["nudge"] == 3
    p.touch("email_opened")
    assert p.fire(decision.timers[0]).commands == []
    assert p.current.runs["j"].exit_reason == "engaged"


def test_nothing_is_sent_after_exit() -> None:
    p = Prospect.of(VIDEO)
    [timer] = p.touch("form_submitted").timers
    p.touch("video_progress", {"percent": 100})
    assert p.current.runs["video"].status == "exited"
    for kind in TouchpointType:
        assert p.touch(kind, {"percent": 100}).commands == []
    assert p.fire(timer).commands == []


def test_a_runaway_run_stops_at_the_loop_limit() -> None:
    steps = "".join(f"- {{id: s{n}, update: {{score: 1}}}}\n" for n in range(250))
    p = Prospect.of(journey(steps))
    decision = p.touch("form_submitted")
    run = p.current.runs["j"]
    assert (run.status, run.exit_reason, run.step) == ("exited", "loop_limit", "s199")
    assert len(steps_of(decision)) == 200
    assert decision.transitions[-1].reason == "exited"


# ---------------------------------------------------------------- stages and goals


def test_steps_move_the_stage_forward_only() -> None:
    c = journey(
        """
        - {id: one, update: {score: 1}, map: {stage: contact}}
        - {id: two, update: {score: 1}, map: {stage: visitor}}
        - {id: three, update: {score: 1}, map: {stage: prospect}}
        """
    )
    p = Prospect.of(c)
    decision = p.touch("form_submitted")
    moves = [
        (t.reason, t.from_stage, t.to_stage) for t in decision.transitions if t.reason != "step"
    ]
    assert moves == [
        ("entered", None, "contact"),
        ("advanced", "contact", "prospect"),
        ("exited", "prospect", None),
    ]
    at_steps = [(t.step, t.from_stage, t.to_stage) for t in decision.transitions[1:-1]]
    assert at_steps == [
        ("one", "contact", "contact"),
        ("two", "contact", "contact"),
        ("three", "contact", "prospect"),
        ("three", "contact", "prospect"),  # the advance itself, caused by step three
    ]
    assert [t.reason for t in decision.transitions[1:-1]] == ["step"] * 3 + ["advanced"]


def test_steps_move_the_stage_back_when_the_journey_allows_it() -> None:
    c = journey(
        """
        - {id: one, update: {score: 1}, map: {stage: prospect}}
        - {id: two, update: {score: 1}, map: {stage: visitor}}
        """,
        extra="allow_backward: true\n",
    )
    p = Prospect.of(c)
    moves = [(t.from_stage, t.to_stage) for t in p.touch("form_submitted").transitions]
    assert ("prospect", "visitor") in moves
    assert p.current.runs["j"].stage == "visitor"


def test_goals_move_the_stage_from_anywhere_without_moving_the_run() -> None:
    p = Prospect.of(VIDEO)
    p.touch("form_submitted")
    decision = p.touch("purchase")
    [goal] = decision.transitions
    assert (goal.reason, goal.from_stage, goal.to_stage) == ("goal", "contact", "customer")
    run = p.current.runs["video"]
    assert (run.stage, run.step, run.waiting is not None) == ("customer", "watch", True)
    assert p.touch("page_view").transitions == []  # visitor is behind customer


def test_goals_move_back_when_the_journey_allows_it() -> None:
    c = journey(
        "- {id: pause, wait: 1d}\n",
        extra="""
        allow_backward: true
        goals:
          - {event: purchase, stage: customer}
          - {event: feedback, stage: prospect, when: {field: emotion, eq: negative}}
        """,
    )
    p = Prospect.of(c)
    p.touch("form_submitted")
    p.touch("purchase")
    assert p.touch("feedback", emotion="positive").transitions == []
    [back] = p.touch("feedback", emotion="negative").transitions
    assert (back.from_stage, back.to_stage) == ("customer", "prospect")


# ---------------------------------------------------------------- policies


def test_a_suppressed_channel_is_skipped_and_recorded() -> None:
    p = Prospect.of(journey(SEND_EXIT))
    p.touch("unsubscribed", channel=Channel.EMAIL)
    decision = p.touch("form_submitted")
    assert decision.commands == []
    assert steps_of(decision) == ["hello", "bye"]
    assert p.current.runs["j"].skipped == {"hello": "suppressed"}


QUIET = """
policies:
  quiet_hours: {start: "21:00", end: "08:00", when_quiet: %s}
  default_timezone: Europe/Madrid
"""


@pytest.mark.parametrize(
    ("zone", "deferred_to"),
    [
        ("Europe/Madrid", datetime(2025, 3, 4, 7, 0, tzinfo=UTC)),  # 22:30 there
        ("Asia/Tokyo", datetime(2025, 3, 3, 23, 0, tzinfo=UTC)),  # 06:30 there
        ("America/New_York", None),  # 16:30 there
        ("Mars/Olympus", datetime(2025, 3, 4, 7, 0, tzinfo=UTC)),  # default zone: Madrid
    ],
)
def test_quiet_hours_defer_in_the_prospects_zone(zone: str, deferred_to: datetime | None) -> None:
    p = Prospect.of(journey(SEND_EXIT, extra=QUIET % "defer"))
    p.now = datetime(2025, 3, 3, 21, 30, tzinfo=UTC)
    p.identify(timezone=zone)
    decision = p.touch("form_submitted")
    if deferred_to is None:
        assert sent(decision) == ["hello"]
        return
    assert decision.commands == []
    [timer] = decision.timers
    assert timer.due_at == deferred_to
    waiting = p.current.runs["j"].waiting
    assert waiting is not None
    assert (waiting.kind, waiting.step) == ("deferred_send", "hello")
    decision = p.fire(timer)
    assert sent(decision) == ["hello"]
    assert steps_of(decision) == ["bye"]  # the send step is not entered twice
    assert decision.commands[0].issued_at == deferred_to


def test_quiet_hours_skip() -> None:
    p = Prospect.of(journey(SEND_EXIT, extra=QUIET % "skip"))
    p.now = datetime(2025, 3, 3, 23, 0, tzinfo=UTC)
    assert p.touch("form_submitted").commands == []
    assert p.current.runs["j"].skipped == {"hello": "quiet_hours"}
    assert p.current.runs["j"].status == "exited"


CAPPED = """
- {id: one, send: {content: one}}
- {id: two, send: {content: two}}
- {id: three, send: {content: three}}
"""


def test_frequency_cap_defers_until_the_window_frees_a_send() -> None:
    cap = "policies:\n  frequency_cap: {max_sends: 2, per: 1d}\n"
    p = Prospect.of(journey(CAPPED, extra=cap))
    decision = p.touch("form_submitted")
    assert sent(decision) == ["one", "two"]
    [timer] = decision.timers
    assert timer.due_at == NOW + timedelta(days=1)
    assert sent(p.fire(timer)) == ["three"]
    assert p.current.sends == [NOW + timedelta(days=1)]  # the first two left the window


def test_frequency_cap_skip_and_sends_of_other_journeys_count() -> None:
    cap = "policies:\n  frequency_cap: {max_sends: 1, per: 12h, when_capped: skip}\n"
    capped = journey(CAPPED, extra=cap, entry="{event: call}")
    p = Prospect.of(journey(SEND_EXIT, name="other"), capped)
    p.touch("form_submitted")
    assert p.touch("call").commands == []
    assert set(p.current.runs["j"].skipped.values()) == {"frequency_cap"}
    assert len(p.current.runs["j"].skipped) == 3
    assert p.current.sends == [NOW]
    p.now = NOW + timedelta(hours=13)
    p.touch("page_view")
    assert p.current.sends == []  # older than the longest cap window


def test_a_send_deferred_twice_gets_a_new_timer_each_time() -> None:
    extra = """
    policies:
      frequency_cap: {max_sends: 1, per: 12h}
      quiet_hours: {start: "21:00", end: "08:00"}
    """
    p = Prospect.of(journey(CAPPED, extra=extra))
    p.now = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    [first] = p.touch("form_submitted").timers
    assert first.due_at == datetime(2025, 3, 4, 0, 0, tzinfo=UTC)  # then quiet until 08:00
    second = p.fire(first)
    assert second.commands == []
    [timer] = second.timers
    assert timer.timer_id != first.timer_id
    assert timer.due_at == datetime(2025, 3, 4, 8, 0, tzinfo=UTC)
    assert sent(p.fire(timer)) == ["two"]


# ---------------------------------------------------------------- versions and determinism


def test_runs_stay_on_their_version_and_retired_journeys_take_no_one_new() -> None:
    v1 = journey("- {id: pause, wait: 1d}\n- {id: hi, send: {content: old}}\n", version=1)
    v2 = journey("- {id: pause, wait: 1d}\n- {id: hi, send: {content: new}}\n", version=2)
    early = Prospect.of(v1, prospect_id="early")
    [timer] = early.touch("form_submitted").timers
    early.publish(v2)
    [command] = early.fire(timer).commands
    assert (command.content, command.journey_version) == ("old", 1)

    late = Prospect(early.journeys, {"j": 2}, prospect_id="late")
    [timer] = late.touch("form_submitted").timers
    assert late.current.runs["j"].version == 2
    late.live.clear()  # retired
    assert sent(late.fire(timer)) == ["new"]
    nobody = Prospect(early.journeys, {}, prospect_id="new")
    assert nobody.touch("form_submitted").transitions == []


def test_a_run_whose_version_is_unloaded_waits_untouched() -> None:
    p = Prospect.of(journey("- {id: pause, wait: 1d}\n" + SEND_EXIT))
    [timer] = p.touch("form_submitted").timers
    p.journeys = {}
    before = p.current.runs
    assert p.fire(timer).transitions == []
    assert p.current.runs == before


def test_decide_is_deterministic() -> None:
    catalogue = (VIDEO, journey("- {id: pause, wait: 1h}" + VARIANTS, name="other"))
    p = Prospect.of(*catalogue)
    p.identify(email="x@example.com", timezone="Europe/Madrid")
    [first, second] = p.touch("form_submitted").timers
    p.fire(second)
    p.fire(first)
    replay = Prospect.of(*catalogue)
    for event, decision in zip(p.inputs, p.decisions, strict=True):
        replay.now = decision.state.updated_at or NOW
        assert replay.feed(event) == decision


def test_entry_conditions_read_the_events_own_fields() -> None:
    c = journey(SEND_EXIT, entry="{event: ad_click, when: {field: campaign.name, startswith: it-}}")
    p = Prospect.of(c)
    assert p.touch("ad_click", campaign="smb-spring").commands == []
    assert sent(p.touch("ad_click", campaign="it-spring")) == ["hello"]


def test_a_version_retired_with_exit_takes_its_runs_out_on_their_next_input() -> None:
    v1 = journey("- {id: pause, wait: 1d}\n" + SEND_EXIT)
    p = Prospect.of(v1)
    [timer] = p.touch("form_submitted").timers
    p.journeys["j"][1] = dataclasses.replace(v1, exit_on_retire=True)
    p.live.clear()
    decision = p.fire(timer)
    assert decision.commands == []
    assert decision.cancelled_timers == [timer.timer_id]
    run = p.current.runs["j"]
    assert (run.status, run.exit_reason) == ("exited", "retired")
    assert [t.reason for t in decision.transitions] == ["exited"]
