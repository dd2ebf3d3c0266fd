"""A timer set and cancelled within one batch is not stored."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg

from services.orchestrator.catalog import JourneyCatalog
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from services.orchestrator.processor import Processor
from services.orchestrator.topics import OrchestratorTopics
from shared.contract import TouchpointEvent
from shared.db import migrate
from shared.kafka.codec import encode

from ..names import topic_prefix

J = """
journey: j
title: T
persona: {id: someone}
entry: {event: form_submitted, reentry: always}
steps:
  - id: hello
    send: {content: hello}
  - id: pause
    wait: 1d
  - id: bye
    send: {content: bye}
"""


def _touch(p: str) -> TouchpointEvent:
    now = datetime.now(UTC)
    return TouchpointEvent.model_validate(
        {
            "event_id": uuid.uuid4(),
            "prospect_id": p,
            "type": "form_submitted",
            "name": "f",
            "channel": "web",
            "occurred_at": now,
            "received_at": now,
            "source": "t",
            "properties": {},
        }
    )


async def test_a_reentry_in_the_same_batch_leaves_only_the_new_runs_timer(
    fresh_database: str,
) -> None:
    await migrate(fresh_database)
    pool = await asyncpg.create_pool(fresh_database)
    try:
        async with pool.acquire() as conn:
            await publish(conn, load_journey(J), J)
        catalog = JourneyCatalog()
        await catalog.refresh(pool)
        proc = Processor(catalog, OrchestratorTopics.prefixed(topic_prefix()))
        a, b = _touch("p1"), _touch("p1")
        inputs = [(m, encode(m), "touchpoints") for m in (a, b)]
        async with pool.acquire() as conn:
            await proc.process(conn, inputs, [], datetime.now(UTC))
            state = await conn.fetchval("SELECT state FROM prospect_state WHERE prospect_id='p1'")
            timers = await conn.fetch("SELECT timer_id, run_id FROM timers")
        run = json.loads(state)["runs"]["j"]
        assert run["number"] == 2
        assert [str(t["run_id"]) for t in timers] == [run["run_id"]]
    finally:
        await pool.close()
