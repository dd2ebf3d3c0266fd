"""kill -9 of the delivery service mid-batch, then a restart: each command delivered once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg

from shared.contract import ContentType, DeliveryOutcome, DeliveryStatus
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, read_topic
from .conftest import command, prepare
from .smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parents[3]


def _start(
    settings: Settings, smtp: SmtpServer, prefix: str, group: str, crash_after: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "TRAYECTO_DATABASE_URL": settings.database_url,
        "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TRAYECTO_SMTP_URL": smtp.url,
        "TRAYECTO_DELIVERY_CONCURRENCY": "1",
        "TRAYECTO_DELIVERY_LEASE_S": "2",
        "TRAYECTO_DELIVERY_RATE_LIMITS": "email=1000",
    }
    return subprocess.Popen(
        [
            sys.executable, "-m", "tests.integration.delivery.crash_server",
            str(free_port()), prefix, group, str(crash_after),
        ],
        cwd=ROOT,
        env=env,
    )  # fmt: skip


async def _statuses(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM deliveries GROUP BY status")
    finally:
        await conn.close()
    return {row["status"]: row["n"] for row in rows}


async def test_kill_9_mid_batch_then_restart_delivers_each_command_once(
    settings: Settings, fresh_database: str, smtp: SmtpServer
) -> None:
    commands_topic, topics = await prepare(settings, fresh_database)
    prefix = commands_topic.removesuffix("delivery.commands")
    app_settings = settings.model_copy(update={"database_url": fresh_database})
    commands = [command("it-welcome", ContentType.EMAIL) for _ in range(12)]
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        await producer.send(commands_topic, commands)
    finally:
        await producer.stop()
    group = f"test-delivery-crash-{uuid.uuid4().hex[:6]}"

    crashing = _start(app_settings, smtp, prefix, group, crash_after=5)
    assert await asyncio.to_thread(crashing.wait, 60) == -9
    assert len(smtp.inbox.messages) == 5
    before = await _statuses(fresh_database)
    assert before.get("sent") == 4, before  # the 5th was accepted, not yet recorded
    assert before.get("handing_off") == 1, before

    survivor = _start(app_settings, smtp, prefix, group, crash_after=0)
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            now = await _statuses(fresh_database)
            if now.get("sent", 0) + now.get("in_doubt", 0) == len(commands):
                break
            assert asyncio.get_running_loop().time() < deadline, now
            await asyncio.sleep(0.5)
    finally:
        survivor.terminate()
        await asyncio.to_thread(survivor.wait, 30)

    assert now == {"sent": 11, "in_doubt": 1}
    counts = smtp.inbox.by_message_id()
    assert counts == {f"<{c.command_id}@trayecto>": 1 for c in commands}
    outcomes = [
        m
        for m in await read_topic(app_settings, topics.outcomes, 12)
        if isinstance(m, DeliveryOutcome)
    ]
    failed = [o for o in outcomes if o.status is DeliveryStatus.FAILED]
    assert len(failed) == 1
    assert "in doubt" in (failed[0].reason or "")
