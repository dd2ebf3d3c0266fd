"""An unsubscribe is honoured before the next send, in every journey, sends already
scheduled included."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shared.contract import Channel, DeliveryCommand, TouchpointEvent, TouchpointType

from .conftest import Start


def _journey(name: str) -> str:
    return f"""
journey: {name}
title: Welcome now, follow up in three seconds
persona: {{id: tester}}
entry: {{event: lead_captured}}
steps:
  - id: welcome
    send: {{content: welcome}}
  - id: pause
    wait: 3s
  - id: follow-up
    send: {{content: follow-up}}
  - id: done
    exit: completed
"""


def _touch(prospect: str, kind: TouchpointType) -> TouchpointEvent:
    return TouchpointEvent(
        prospect_id=prospect,
        type=kind,
        name=kind.value,
        channel=Channel.EMAIL,
        occurred_at=datetime.now(UTC),
        source="test",
    )


async def test_unsubscribe_cancels_the_scheduled_sends_of_every_journey(
    start_orchestrator: Start,
) -> None:
    o = await start_orchestrator(_journey("unsub-a"), _journey("unsub-b"))
    prospect, control = (f"{who}-{uuid.uuid4().hex[:6]}" for who in ("leaver", "stayer"))
    await o.send(_touch(prospect, TouchpointType.LEAD_CAPTURED))
    await o.send(_touch(control, TouchpointType.LEAD_CAPTURED))
    welcomes = await o.messages(o.topics.commands, expected=4)
    assert sorted((c.prospect_id, getattr(c, "step", "")) for c in welcomes) == sorted(
        [(p, "welcome") for p in (prospect, control) for _ in range(2)]
    )
    # Both follow-ups of the prospect are scheduled (waiting) when it unsubscribes.
    await o.send(_touch(prospect, TouchpointType.UNSUBSCRIBED))

    async def all_done() -> bool:
        for who in (prospect, control):
            answer = await o.client.get(f"/v1/prospects/{who}")
            runs = answer.json()["journeys"] if answer.status_code == 200 else []
            if len(runs) != 2 or any(r["status"] != "exited" for r in runs):
                return False
        return True

    await o.wait_for(all_done, timeout_s=30, what="every run to finish")
    commands = await o.messages(o.topics.commands, expected=6)
    sent = sorted(
        (c.prospect_id, c.journey, c.step) for c in commands if isinstance(c, DeliveryCommand)
    )
    assert sent == sorted(
        [(prospect, j, "welcome") for j in ("unsub-a", "unsub-b")]
        + [(control, j, s) for j in ("unsub-a", "unsub-b") for s in ("welcome", "follow-up")]
    )
    skipped = await o.rows(
        "SELECT journey, step FROM journey_history WHERE prospect_id = $1 AND step = 'follow-up'"
        " AND reason = 'step'",
        prospect,
    )
    assert sorted(r["journey"] for r in skipped) == ["unsub-a", "unsub-b"]
