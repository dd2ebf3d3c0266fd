"""Kafka stops under the ingest service: 503 with Retry-After, then success, nothing lost.

Uses a private broker on free ports so that stopping it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from services.ingest import create_app
from services.ingest.sources import add_source
from shared.contract import TouchpointEvent
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.stack.kafka import Kafka

from ..names import topic_name
from .conftest import free_port, read_topic, serve


@pytest.fixture
def private_kafka(settings: Settings) -> Iterator[Kafka]:
    port, controller = free_port(), free_port()
    private = settings.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{port}",
            "kafka_controller_port": controller,
            "stack_dir": settings.stack_dir.parent / f"test-kafka-{uuid.uuid4().hex[:8]}",
        }
    )
    kafka = Kafka(private)
    kafka.prepare()
    kafka.start()
    yield kafka
    kafka.stop()
    shutil.rmtree(private.stack_dir, ignore_errors=True)


@pytest.fixture
async def outage_ingest(
    private_kafka: Kafka, fresh_database: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings, str]]:
    await migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        key = (await add_source(conn, "outage")).write_key
    finally:
        await conn.close()
    port = free_port()
    settings = private_kafka.settings.model_copy(
        update={"database_url": fresh_database, "ingest_publish_timeout_s": 2.0}
    )
    topic = topic_name("outage")
    await ensure_topics(settings, [topic], partitions=2)
    server, task = await serve(create_app(settings, touchpoints_topic=topic), port)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", auth=(key, ""), timeout=30
    ) as client:
        yield client, settings, topic
    server.should_exit = True
    await task


def _track(message_id: str) -> dict[str, str]:
    return {"userId": "p-outage", "event": "Page Viewed", "messageId": message_id}


async def test_broker_outage_answers_503_then_recovers_without_loss(
    private_kafka: Kafka, outage_ingest: tuple[httpx.AsyncClient, Settings, str]
) -> None:
    client, settings, topic = outage_ingest
    assert (await client.post("/v1/track", json=_track("before"))).status_code == 200

    await asyncio.to_thread(private_kafka.stop)
    loop = asyncio.get_running_loop()
    started = loop.time()
    refused = await client.post("/v1/track", json=_track("during"))
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) > 0
    assert loop.time() - started < 10, "503 must come within the publish timeout, not hang"
    assert (await client.get("/healthz")).status_code == 503

    await asyncio.to_thread(private_kafka.start)
    # The client retries the refused request, as told, until it is accepted.
    deadline = loop.time() + 60
    while (retry := await client.post("/v1/track", json=_track("during"))).status_code != 200:
        assert retry.status_code == 503, retry.text
        assert loop.time() < deadline, "ingest did not recover after Kafka returned"
        await asyncio.sleep(1)
    assert (await client.post("/v1/track", json=_track("after"))).status_code == 200

    events = await read_topic(settings, topic, expected=3, timeout_s=20)
    assert all(isinstance(e, TouchpointEvent) for e in events)
    by_message = {e.message_id: e.event_id for e in events if isinstance(e, TouchpointEvent)}
    assert set(by_message) == {"before", "during", "after"}
    # A send that timed out may still have reached the broker; its copy then carries
    # the same event id, which consumers drop.
    assert len({e.event_id for e in events}) == 3
