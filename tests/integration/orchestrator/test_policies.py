"""Quiet hours and the frequency cap on the real services: every send they hold back is
on the journey transitions, in the prospect's history and in GET /v1/prospects/{id}."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contract import (
    Channel,
    DeliveryCommand,
    StageTransition,
    TouchpointEvent,
    TouchpointType,
)

from .conftest import Start


def _quiet(name: str, when_quiet: str, start: str, end: str) -> str:
    return f"""
journey: {name}
title: Quiet hours ({when_quiet})
persona: {{id: tester}}
entry: {{event: lead_captured}}
policies:
  quiet_hours: {{start: "{start}", end: "{end}", when_quiet: {when_quiet}}}
  default_timezone: UTC
steps:
  - id: hello
    send: {{content: {name}-hello}}
  - id: pause
    wait: 1d
"""


CAPPED = """
journey: capped
title: At most one send every 3 seconds
persona: {id: tester}
entry: {event: lead_captured}
policies:
  frequency_cap: {max_sends: 1, per: 3s, when_capped: defer}
steps:
  - id: first
    send: {content: capped-first}
  - id: second
    send: {content: capped-second}
  - id: done
    exit: completed
"""


async def test_quiet_hours_and_the_cap_skip_and_defer_and_it_is_recorded(
    start_orchestrator: Start,
) -> None:
    # Quiet hours around the present moment (UTC), an hour either side.
    now = datetime.now(UTC)
    start, end = ((now + timedelta(hours=h)).strftime("%H:%M") for h in (-1, 1))
    o = await start_orchestrator(
        _quiet("quiet-skip", "skip", start, end), _quiet("quiet-defer", "defer", start, end), CAPPED
    )
    prospect = f"policies-{uuid.uuid4().hex[:8]}"
    await o.send(
        TouchpointEvent(
            prospect_id=prospect,
            type=TouchpointType.LEAD_CAPTURED,
            name="lead_captured",
            channel=Channel.WEB,
            occurred_at=now,
            source="test",
        )
    )

    async def capped_done() -> dict[str, Any] | None:
        answer = await o.client.get(f"/v1/prospects/{prospect}")
        if answer.status_code != 200:
            return None
        body: dict[str, Any] = answer.json()
        runs = {run["journey"]: run for run in body["journeys"]}
        return body if runs.get("capped", {}).get("status") == "exited" else None

    body = await o.wait_for(capped_done, timeout_s=30, what="the capped send to go out")
    runs = {run["journey"]: run for run in body["journeys"]}
    held = [
        (h["journey"], h["reason"], h["step"], h["send_outcome"], h["held_by"])
        for h in body["history"]
        if h["send_outcome"] is not None
    ]
    assert sorted(held) == sorted(
        [
            ("capped", "step", "first", "sent", None),
            ("capped", "step", "second", "deferred", "frequency_cap"),
            ("capped", "retried", "second", "sent", None),
            ("quiet-defer", "step", "hello", "deferred", "quiet_hours"),
            ("quiet-skip", "step", "hello", "skipped", "quiet_hours"),
        ]
    )
    by_key = {(h["journey"], h["reason"], h["step"]): h for h in body["history"]}
    quiet_end = datetime.fromisoformat(by_key["quiet-defer", "step", "hello"]["deferred_until"])
    assert timedelta(minutes=59) < quiet_end - now <= timedelta(hours=1)
    cap_free = datetime.fromisoformat(by_key["capped", "step", "second"]["deferred_until"])
    assert timedelta(seconds=2) < cap_free - now < timedelta(seconds=10)
    retried_at = datetime.fromisoformat(by_key["capped", "retried", "second"]["occurred_at"])
    assert retried_at >= cap_free

    # The skipped run went on at once; the deferred one waits for the quiet hours' end.
    assert runs["quiet-skip"]["skipped"] == {"hello": "quiet_hours"}
    assert runs["quiet-skip"]["step"] == "pause"
    deferred = runs["quiet-defer"]
    assert (deferred["status"], deferred["step"], deferred["waiting_for"]) == (
        "active",
        "hello",
        "deferred_send",
    )
    assert datetime.fromisoformat(deferred["waiting_until"]) == quiet_end
    assert ("quiet-defer", "hello") in {(t["journey"], t["step"]) for t in body["pending_timers"]}

    # Only the capped journey's two sends were commands, each once.
    rows = await o.rows(
        "SELECT count(*) AS n FROM outbox WHERE topic = $1 AND key = $2",
        o.topics.commands,
        prospect.encode(),
    )
    assert rows[0]["n"] == 2
    # The topic carries the same transitions as the history, each once.
    transitions = [
        t
        for t in await o.messages(o.topics.transitions, len(body["history"]))
        if isinstance(t, StageTransition)
    ]
    assert len(transitions) == len(body["history"])
    on_wire = {(t.journey, t.reason, t.step): (t.send_outcome, t.held_by) for t in transitions}
    assert on_wire["quiet-skip", "step", "hello"] == ("skipped", "quiet_hours")
    assert on_wire["quiet-defer", "step", "hello"] == ("deferred", "quiet_hours")
    assert on_wire["capped", "retried", "second"] == ("sent", None)
    commands = [m for m in await o.messages(o.topics.commands, 2) if isinstance(m, DeliveryCommand)]
    assert sorted(c.content for c in commands) == ["capped-first", "capped-second"]
