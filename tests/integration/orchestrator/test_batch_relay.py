"""After its commit, a batch publishes the outbox rows it wrote without reading them
back, unless older rows are still unpublished: those go first, in order."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.orchestrator.catalog import JourneyCatalog
from services.orchestrator.runtime import Orchestrator, RuntimeMetrics
from shared import outbox
from shared.contract import StageTransition
from shared.db import create_pool
from shared.kafka.codec import Record, encode
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import read_topic
from .conftest import prepare


def _transitions(prospect: str, count: int) -> list[StageTransition]:
    return [
        StageTransition(
            prospect_id=prospect,
            journey="relay",
            journey_version=1,
            persona="tester",
            run_id=uuid.uuid4(),
            step=f"step-{i}",
            occurred_at=datetime.now(UTC),
        )
        for i in range(count)
    ]


async def test_a_batch_publishes_its_rows_after_older_ones_and_never_twice(
    settings: Settings, fresh_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = await prepare(settings, fresh_database)
    app_settings = settings.model_copy(update={"database_url": fresh_database})
    pool = await create_pool(app_settings)
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    orchestrator = Orchestrator(
        app_settings,
        pool,
        producer,
        JourneyCatalog(),
        topics,
        RuntimeMetrics(CollectorRegistry()),
        asyncio.Event(),
    )
    # One prospect: one partition, so the topic keeps the order of publication.
    sent = _transitions(f"relay-{uuid.uuid4().hex[:6]}", 8)

    async def write(messages: list[StageTransition]) -> list[tuple[int, str, Record]]:
        records = [(topics.transitions, encode(m)) for m in messages]
        async with pool.acquire() as conn:
            ids = await outbox.add_records(conn, records)
        return [(i, topic, r) for i, (topic, r) in zip(ids, records, strict=True)]

    relayed: list[int] = []  # rows the relay read back and published

    async def relay(*args: Any, **kwargs: Any) -> int:
        relayed.append(await read_back(*args, **kwargs))
        return relayed[-1]

    read_back = outbox.relay
    monkeypatch.setattr(outbox, "relay", relay)
    try:
        await write(sent[:2])  # a batch whose relay failed: still unpublished
        await orchestrator._relay(await write(sent[2:5]))
        assert sum(relayed) == 5  # older rows first: all of them through the relay
        later = await write(sent[5:])
        async with pool.acquire() as conn:  # another relay got to one row first
            await conn.execute("UPDATE outbox SET published_at = now() WHERE id = $1", later[0][0])
        await orchestrator._relay(later)
        assert sum(relayed) == 5  # nothing older: published from memory

        found = await read_topic(settings, topics.transitions, 7)
        assert [m.event_id for m in found] == [m.event_id for m in sent[:5] + sent[6:]]
        async with pool.acquire() as conn:
            assert await outbox.backlog(conn) == 0
    finally:
        await producer.stop()
        await pool.close()
