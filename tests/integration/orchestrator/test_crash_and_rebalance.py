"""kill -9 between the database commit and the offset commit; two instances rebalancing.

Either way every prospect ends where it should and each delivery command exists once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from shared.contract import Channel, DeliveryCommand, TouchpointEvent, TouchpointType
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, read_topic
from .conftest import ADMIN, ADMIN_TOKEN, prepare

ROOT = Path(__file__).resolve().parents[3]
TWO_SENDS = """
journey: two-sends
title: Welcome and follow-up
persona: {id: tester}
entry: {event: lead_captured}
steps:
  - id: welcome
    send: {content: welcome}
  - id: pause
    wait: 1s
  - id: follow-up
    send: {content: follow-up}
  - id: done
    exit: completed
"""


def _lead(prospect: str) -> TouchpointEvent:
    return TouchpointEvent(
        prospect_id=prospect,
        type=TouchpointType.LEAD_CAPTURED,
        name="lead_captured",
        channel=Channel.PAID_SEARCH,
        occurred_at=datetime.now(UTC),
        source="test",
    )


class _Instance:
    def __init__(self, settings: Settings, prefix: str, group: str, crash_at: int) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "TRAYECTO_DATABASE_URL": settings.database_url,
            "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "TRAYECTO_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tests.integration.orchestrator.crash_server",
                str(self.port), prefix, group, str(crash_at),
            ],
            cwd=ROOT,
            env=env,
        )  # fmt: skip

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        await asyncio.to_thread(self.process.wait, 30)


async def _setup(settings: Settings, dsn: str, prospects: int) -> tuple[Settings, str, list[str]]:
    topics = await prepare(settings, dsn)
    prefix = topics.touchpoints.removesuffix("touchpoints")
    conn = await asyncpg.connect(dsn)
    try:
        await publish(conn, load_journey(TWO_SENDS), TWO_SENDS)
    finally:
        await conn.close()
    run = uuid.uuid4().hex[:6]
    return (
        settings.model_copy(update={"database_url": dsn}),
        prefix,
        [f"p{i}-{run}" for i in range(prospects)],
    )


async def _send(settings: Settings, topic: str, prospects: list[str]) -> None:
    producer = Producer(settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        await producer.send(topic, [_lead(p) for p in prospects])
    finally:
        await producer.stop()


async def _all_exited(dsn: str, prospects: list[str], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        conn = await asyncpg.connect(dsn)
        try:
            done = await conn.fetchval(
                "SELECT count(*) FROM prospect_state WHERE prospect_id = ANY($1::text[])"
                " AND state->'runs'->'two-sends'->>'status' = 'exited'",
                prospects,
            )
        finally:
            await conn.close()
        if done == len(prospects):
            return
        assert asyncio.get_running_loop().time() < deadline, f"{done}/{len(prospects)} finished"
        await asyncio.sleep(0.5)


async def _commands_exactly_once(settings: Settings, topic: str, prospects: list[str]) -> None:
    expected = 2 * len(prospects)
    messages = await read_topic(settings, topic, expected, timeout_s=20)
    commands = [m for m in messages if isinstance(m, DeliveryCommand)]
    per_send = Counter((c.prospect_id, c.content) for c in commands)
    assert set(per_send) == {(p, c) for p in prospects for c in ("welcome", "follow-up")}
    assert max(per_send.values()) == 1, [k for k, n in per_send.items() if n > 1][:5]
    assert len({c.command_id for c in commands}) == expected


async def test_kill_9_between_db_commit_and_offset_commit(
    settings: Settings, fresh_database: str
) -> None:
    app_settings, prefix, prospects = await _setup(settings, fresh_database, 40)
    await _send(app_settings, f"{prefix}touchpoints", prospects)
    group = f"test-crash-{uuid.uuid4().hex[:6]}"

    crashing = _Instance(app_settings, prefix, group, crash_at=1)
    code = await asyncio.to_thread(crashing.process.wait, 60)
    assert code == -9, "the instance should have killed itself after its first commit"
    conn = await asyncpg.connect(fresh_database)
    try:
        # The crash point: the batch is committed in PostgreSQL, nothing was published.
        committed = await conn.fetchval("SELECT count(*) FROM processed_events")
        unpublished = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        published = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
        )
    finally:
        await conn.close()
    assert committed > 0
    assert unpublished > 0
    assert published == 0

    survivor = _Instance(app_settings, prefix, group, crash_at=0)
    try:
        await _all_exited(fresh_database, prospects, timeout_s=60)
        await _commands_exactly_once(app_settings, f"{prefix}delivery.commands", prospects)
        url = f"http://127.0.0.1:{survivor.port}"
        async with httpx.AsyncClient(base_url=url, headers=ADMIN) as client:
            state = (await client.get(f"/v1/prospects/{prospects[0]}")).json()
        assert state["journeys"][0]["exit_reason"] == "completed"
    finally:
        await survivor.stop()


async def test_two_instances_and_a_rebalance_mid_stream(
    settings: Settings, fresh_database: str
) -> None:
    app_settings, prefix, prospects = await _setup(settings, fresh_database, 90)
    group = f"test-rebalance-{uuid.uuid4().hex[:6]}"
    first = _Instance(app_settings, prefix, group, crash_at=0)
    second: _Instance | None = None
    try:
        await _send(app_settings, f"{prefix}touchpoints", prospects[:30])
        await asyncio.sleep(2)
        second = _Instance(app_settings, prefix, group, crash_at=0)  # joins: rebalance
        await _send(app_settings, f"{prefix}touchpoints", prospects[30:60])
        await asyncio.sleep(2)
        await first.stop()  # leaves: rebalance again, its partitions move to the second
        await _send(app_settings, f"{prefix}touchpoints", prospects[60:])
        await _all_exited(fresh_database, prospects, timeout_s=90)
        await _commands_exactly_once(app_settings, f"{prefix}delivery.commands", prospects)
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
