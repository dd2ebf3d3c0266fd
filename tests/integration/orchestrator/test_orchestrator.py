"""Prospects driven through every step type and the video tree, on the real broker and database.

Test journeys use waits of seconds (an accelerated clock); the protocol is the real one:
events on Kafka, state and timers in PostgreSQL, commands and transitions via the outbox.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from datetime import UTC, datetime

import asyncpg

from services.orchestrator.journey.store import retire
from shared.contract import (
    Channel,
    DeliveryCommand,
    StageTransition,
    TouchpointEvent,
    TouchpointType,
)

from .conftest import Start

EVERY_STEP = """
journey: every-step
title: Every step type
persona: {id: tester}
entry: {event: lead_captured}
goals:
  - {event: purchase, stage: customer}
steps:
  - id: welcome
    send: {content: welcome, type: email}
    map: {stage: visitor}
  - id: pause
    wait: 1s
  - id: video
    send: {content: intro-video, type: video}
  - id: watch
    wait_for: {event: video_progress, when: {prop: percent, gte: 100}, timeout: 2s}
    next: webinar
    on_timeout: depth
  - id: depth
    branch:
      - when: {not: {fact: video_max_percent, gt: 0}}
        next: reinvite
      - when: {fact: video_max_percent, lt: 100}
        next: pdf
    else: webinar
  - id: reinvite
    send: {content: video-reinvite, type: video}
    next: ab
  - id: pdf
    send: {content: pdf-summary, type: pdf}
    next: ab
  - id: webinar
    send: {content: webinar-invite, type: webinar_invite}
    map: {stage: prospect}
    next: ab
  - id: ab
    split:
      - {variant: a, weight: 1, next: score}
      - {variant: b, weight: 1, next: score}
  - id: score
    update: {set: {nurtured: true}, score: 5}
  - id: enough
    branch:
      - when: {fact: score, gte: 10}
        next: done
    else: again
  - id: again
    wait: 1s
  - id: back
    goto: ab
  - id: done
    exit: completed
"""


def _touch(prospect: str, kind: TouchpointType, **properties: object) -> TouchpointEvent:
    return TouchpointEvent(
        prospect_id=prospect,
        type=kind,
        name=kind.value,
        channel=Channel.EMAIL,
        occurred_at=datetime.now(UTC),
        source="test",
        properties=dict(properties),
    )


async def test_every_step_type_and_the_video_tree(start_orchestrator: Start) -> None:
    o = await start_orchestrator(EVERY_STEP)
    run = uuid.uuid4().hex[:8]
    none, half, full = (f"{name}-{run}" for name in ("none", "half", "full"))
    await o.send(*(_touch(p, TouchpointType.LEAD_CAPTURED) for p in (none, half, full)))

    async def sent(prospect: str, content: str) -> bool:
        rows = await o.rows(
            "SELECT 1 FROM outbox WHERE topic = $1 AND key = $2 AND convert_from(value, 'UTF8')"
            " LIKE '%' || $3 || '%'",
            o.topics.commands,
            prospect.encode(),
            f'"content":"{content}"',
        )
        return bool(rows)

    for prospect in (half, full):
        await o.wait_for(functools.partial(sent, prospect, "intro-video"), what="the video")
    await o.send(_touch(half, TouchpointType.VIDEO_PROGRESS, percent=50, content="intro-video"))
    await o.send(_touch(full, TouchpointType.VIDEO_PROGRESS, percent=100, content="intro-video"))
    await o.send(_touch(full, TouchpointType.PURCHASE))

    async def all_exited() -> bool:
        for prospect in (none, half, full):
            answer = await o.client.get(f"/v1/prospects/{prospect}")
            if answer.status_code != 200 or answer.json()["journeys"][0]["status"] != "exited":
                return False
        return True

    await o.wait_for(all_exited, timeout_s=40, what="every prospect to finish the journey")

    commands = [m for m in await o.messages(o.topics.commands, 9) if isinstance(m, DeliveryCommand)]
    by_prospect: dict[str, list[str]] = {}
    for command in commands:
        by_prospect.setdefault(command.prospect_id, []).append(command.content)
    assert sorted(by_prospect[none]) == sorted(["welcome", "intro-video", "video-reinvite"])
    assert sorted(by_prospect[half]) == sorted(["welcome", "intro-video", "pdf-summary"])
    assert sorted(by_prospect[full]) == sorted(["welcome", "intro-video", "webinar-invite"])
    assert len({c.command_id for c in commands}) == len(commands) == 9

    full_state = (await o.client.get(f"/v1/prospects/{full}")).json()
    assert full_state["journeys"][0]["stage"] == "customer"  # the purchase goal
    assert full_state["facts"]["score"] == 10  # two passes through the update step
    assert full_state["traits"]["nurtured"] is True
    assert full_state["journeys"][0]["variants"]["ab"] in {"a", "b"}
    assert full_state["journeys"][0]["exit_reason"] == "completed"
    assert full_state["pending_timers"] == []
    # The history: every step entered, in order, with the split's variant on its own.
    history = full_state["history"]
    assert {h["run_id"] for h in history} == {full_state["journeys"][0]["run_id"]}
    entered_steps = [(h["step"], h["variant"]) for h in history if h["reason"] == "step"]
    assert [step for step, _ in entered_steps] == [
        "welcome", "pause", "video", "watch", "webinar", "ab", "score", "enough",
        "again", "back", "ab", "score", "enough", "done",
    ]  # fmt: skip
    variant = full_state["journeys"][0]["variants"]["ab"]
    assert [v for step, v in entered_steps if step == "ab"] == [variant, variant]
    assert all(v is None for step, v in entered_steps if step != "ab")
    sends = {h["step"]: h["send_outcome"] for h in history if h["send_outcome"] is not None}
    assert sends == {"welcome": "sent", "video": "sent", "webinar": "sent"}
    [entered] = [h for h in history if h["reason"] == "entered"]
    assert (entered["from_stage"], entered["to_stage"]) == (None, "visitor")
    stages = [(h["reason"], h["to_stage"]) for h in history if h["reason"] in ("advanced", "goal")]
    assert stages == [("advanced", "prospect"), ("goal", "customer")]
    [exited] = [h for h in history if h["reason"] == "exited"]
    assert (exited["step"], exited["exit_reason"]) == ("done", "completed")
    # The current step of a finished run is where it ended.
    assert full_state["journeys"][0]["step"] == "done"
    unknown = await o.client.get(f"/v1/prospects/nobody-{run}")
    assert unknown.status_code == 404
    assert f"nobody-{run}" in unknown.text

    transitions = [
        m for m in await o.messages(o.topics.transitions, 10) if isinstance(m, StageTransition)
    ]
    reasons = Counter(t.reason for t in transitions if t.prospect_id == full)
    assert reasons["entered"] == 1
    assert reasons["exited"] == 1
    assert reasons["goal"] == 1
    steps = [t.step for t in transitions if t.prospect_id == none and t.reason == "step"]
    for step in ("welcome", "pause", "video", "watch", "depth", "reinvite", "ab", "again", "back"):
        assert step in steps, step


LONG_WAIT = """
journey: long-wait
title: A long wait
persona: {id: tester}
entry: {event: lead_captured}
steps:
  - id: hello
    send: {content: hello}
  - id: pause
    wait: 30d
  - id: later
    send: {content: later}
"""


async def test_retiring_a_version_with_exit_takes_its_prospects_out(
    start_orchestrator: Start,
) -> None:
    o = await start_orchestrator(LONG_WAIT)
    prospect = f"retired-{uuid.uuid4().hex[:6]}"
    await o.send(_touch(prospect, TouchpointType.LEAD_CAPTURED))

    async def waiting() -> bool:
        answer = await o.client.get(f"/v1/prospects/{prospect}")
        return answer.status_code == 200 and bool(answer.json()["pending_timers"])

    await o.wait_for(waiting, what="the prospect to wait")
    [paused] = (await o.client.get(f"/v1/prospects/{prospect}")).json()["journeys"]
    assert (paused["status"], paused["step"], paused["waiting_for"]) == ("active", "pause", "wait")
    conn = await asyncpg.connect(o.dsn)
    try:
        await retire(conn, "long-wait", 1, "exit")
    finally:
        await conn.close()

    async def exited() -> dict[str, object] | None:
        run = (await o.client.get(f"/v1/prospects/{prospect}")).json()["journeys"][0]
        return run if run["status"] == "exited" else None

    run = await o.wait_for(exited, what="the retired run to exit")
    assert run["exit_reason"] == "retired"
    state = (await o.client.get(f"/v1/prospects/{prospect}")).json()
    assert state["pending_timers"] == []
    rows = await o.rows("SELECT count(*) AS n FROM outbox WHERE topic = $1", o.topics.commands)
    assert rows[0]["n"] == 1  # "later" was never sent
