"""A journey started anonymously goes on once the visitor identifies (a new prospect key)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shared.contract import Channel, IdentifyEvent, TouchpointEvent, TouchpointType

from .conftest import Start

ANONYMOUS_START = """
journey: anonymous-start
title: Ad click, then a lead form
persona: {id: tester}
entry: {event: ad_click}
steps:
  - id: await-lead
    wait_for: {event: lead_captured, timeout: 1d}
    next: welcome
    on_timeout: gone
  - id: welcome
    send: {content: welcome}
  - id: done
    exit: completed
  - id: gone
    exit: no-lead
"""


def _touch(prospect: str, kind: TouchpointType, **ids: str) -> TouchpointEvent:
    return TouchpointEvent(
        prospect_id=prospect,
        type=kind,
        name=kind.value,
        channel=Channel.WEB,
        occurred_at=datetime.now(UTC),
        source="test",
        **ids,
    )


async def test_the_known_prospect_takes_over_the_anonymous_run(start_orchestrator: Start) -> None:
    o = await start_orchestrator(ANONYMOUS_START)
    run = uuid.uuid4().hex[:8]
    anonymous, user = f"anon-{run}", f"user-{run}@example.com"
    await o.send(_touch(anonymous, TouchpointType.AD_CLICK, anonymous_id=anonymous))

    async def waiting(prospect: str) -> bool:
        answer = await o.client.get(f"/v1/prospects/{prospect}")
        return answer.status_code == 200 and bool(answer.json()["pending_timers"])

    await o.wait_for(lambda: waiting(anonymous), what="the anonymous run to wait for the lead")
    identify = IdentifyEvent(
        prospect_id=user,
        anonymous_id=anonymous,
        user_id=user,
        occurred_at=datetime.now(UTC),
        source="test",
        traits={"email": user},
    )
    await o.send(identify)
    await o.send(_touch(user, TouchpointType.LEAD_CAPTURED, user_id=user))

    commands = await o.messages(o.topics.commands, expected=1)
    assert [(c.prospect_id, getattr(c, "step", None)) for c in commands] == [(user, "welcome")]
    answer = (await o.client.get(f"/v1/prospects/{user}")).json()
    (journey,) = answer["journeys"]
    assert journey["status"] == "exited"
    assert journey["exit_reason"] == "completed"
    left = (await o.client.get(f"/v1/prospects/{anonymous}")).json()
    assert left["journeys"] == []
    # The timer of the moved run belongs to the user now: none is left on the visitor.
    timers = await o.rows("SELECT prospect_id FROM timers WHERE prospect_id = $1", anonymous)
    assert list(timers) == []
