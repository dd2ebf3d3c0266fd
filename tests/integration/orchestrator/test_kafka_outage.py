"""The broker stops for 30 s under a flow through ingest and the orchestrator.

Ingest answers 503 meanwhile (the client retries, as told); the orchestrator's consumer
and outbox relay resume on their own when the broker returns. Every accepted lead ends
as exactly one delivery command (copies of one command id are allowed: the relay is at
least once and delivery dedupes by command id), and no lead is lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import asyncpg
import httpx

from services.ingest import create_app as ingest_app
from services.ingest.sources import add_source
from services.orchestrator import create_app as orchestrator_app
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from shared.contract import DeliveryCommand
from shared.settings import Settings
from shared.stack.kafka import Kafka

from ..ingest.conftest import free_port, read_topic, serve
from ..ingest.test_kafka_outage import private_kafka
from .conftest import prepare

__all__ = ["private_kafka"]  # the fixture, shared with ingest's outage test

WELCOME = """
journey: outage-welcome
title: Welcome each lead
persona: {id: testers}
entry: {event: lead_captured}
steps:
  - id: welcome
    send: {content: welcome}
  - id: done
    exit: completed
"""
OUTAGE_S = 30.0


def _leads(run: str, names: range) -> dict[str, object]:
    batch = [
        {
            "type": "track",
            "userId": f"{run}-{i}",
            "event": "lead_captured",
            "messageId": f"{run}-{i}",
        }
        for i in names
    ]
    return {"batch": batch}


async def test_a_broker_outage_loses_and_doubles_nothing(
    private_kafka: Kafka, settings: Settings, fresh_database: str
) -> None:
    private = private_kafka.settings.model_copy(
        update={"database_url": fresh_database, "ingest_publish_timeout_s": 2.0}
    )
    topics = await prepare(private, fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        await publish(conn, load_journey(WELCOME), WELCOME)
        key = (await add_source(conn, "outage")).write_key
    finally:
        await conn.close()
    ingest_port, orchestrator_port = free_port(), free_port()
    servers = [
        await serve(ingest_app(private, touchpoints_topic=topics.touchpoints), ingest_port),
        await serve(
            orchestrator_app(private, topics=topics, group=f"outage-{uuid.uuid4().hex[:8]}"),
            orchestrator_port,
        ),
    ]
    run = uuid.uuid4().hex[:6]
    loop = asyncio.get_running_loop()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ingest_port}", auth=(key, ""), timeout=30
        ) as client:
            assert (
                await client.post("/v1/batch", json=_leads(run, range(0, 20)))
            ).status_code == 200
            await asyncio.sleep(2)  # some of them are being processed when the broker goes

            await asyncio.to_thread(private_kafka.stop)
            stopped = loop.time()
            refused: list[range] = []
            while loop.time() - stopped < OUTAGE_S:
                names = range(100 + 10 * len(refused), 110 + 10 * len(refused))
                answer = await client.post("/v1/batch", json=_leads(run, names))
                assert answer.status_code == 503, answer.text
                refused.append(names)
                await asyncio.sleep(3)
            await asyncio.to_thread(private_kafka.start)

            # The client retries each refused batch until it is accepted.
            deadline = loop.time() + 90
            for names in refused:
                while (
                    again := await client.post("/v1/batch", json=_leads(run, names))
                ).status_code != 200:
                    assert again.status_code == 503, again.text
                    assert loop.time() < deadline, (
                        "ingest did not recover after the broker returned"
                    )
                    await asyncio.sleep(1)
            assert (
                await client.post("/v1/batch", json=_leads(run, range(500, 520)))
            ).status_code == 200
        expected = {f"{run}-{i}" for i in (*range(0, 20), *range(500, 520))}
        expected |= {f"{run}-{i}" for names in refused for i in names}
        messages = await read_topic(private, topics.commands, len(expected), timeout_s=90)
    finally:
        for server, task in servers:
            server.should_exit = True
            await task
    commands: dict[str, set[uuid.UUID]] = defaultdict(set)
    for m in messages:
        assert isinstance(m, DeliveryCommand)
        commands[m.prospect_id].add(m.command_id)
    assert set(commands) == expected, f"missing {sorted(expected - set(commands))[:5]}"
    assert all(len(ids) == 1 for ids in commands.values()), "a lead got two different commands"
