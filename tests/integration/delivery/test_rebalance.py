"""Two delivery instances in one consumer group: the second joins mid-stream, the first leaves.

Commands keep arriving over several seconds on three partitions while the group changes:
the second instance joins (the partitions are split between the two), then the first
leaves: cleanly (SIGTERM) while the SMTP server holds its answer to one of its DATA
commands, or by kill -9 (its partitions move once its session times out; its claimed
deliveries once their lease has passed). Each command must reach an SMTP server once,
end ``sent``, and have one ``sent`` outcome. Each instance sends to an SMTP server of
its own, so the test knows which one is handing a message off.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.contract import ContentType, DeliveryCommand, DeliveryOutcome, DeliveryStatus
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, read_topic
from .conftest import command, prepare
from .smtp_server import Inbox, SmtpServer

ROOT = Path(__file__).resolve().parents[3]
CHUNK = 10
"""Commands per send of the stream; one send every ``PAUSE_S``."""
PAUSE_S = 0.2
FINAL = {"sent", "skipped", "failed", "bounced", "dead", "in_doubt"}


@dataclass
class _HoldingInbox(Inbox):
    """Until ``release`` is set again, answers to DATA wait; ``holding`` tells one does."""

    release: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.release.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.release.is_set():
            self.holding.set()
            await asyncio.to_thread(self.release.wait, 30)
        return await super().handle_DATA(server, session, envelope)


class _Instance:
    def __init__(self, settings: Settings, prefix: str, group: str) -> None:
        self.inbox = _HoldingInbox()
        self.smtp = SmtpServer(inbox=self.inbox).__enter__()
        self.port = free_port()
        env = {
            **os.environ,
            "TRAYECTO_DATABASE_URL": settings.database_url,
            "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "TRAYECTO_SMTP_URL": self.smtp.url,
            "TRAYECTO_DELIVERY_CONCURRENCY": "1",
            "TRAYECTO_DELIVERY_LEASE_S": "5",
            "TRAYECTO_DELIVERY_RATE_LIMITS": "email=1000",
        }
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tests.integration.delivery.rebalance_server",
                str(self.port), prefix, group,
            ],
            cwd=ROOT,
            env=env,
        )  # fmt: skip

    async def received(self) -> int:
        """Commands this instance's consumer has been given so far (its own /metrics)."""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as client:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    text = (await client.get("/metrics")).text
                    break
                except httpx.TransportError:
                    assert self.process.poll() is None, "the instance exited"
                    assert asyncio.get_running_loop().time() < deadline, "it did not start"
                    await asyncio.sleep(0.2)
        return sum(
            int(s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "faststream_received_messages_total"
        )

    async def stop(self) -> int:
        self.inbox.release.set()
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    async def close(self) -> None:
        try:
            await self.stop()
        finally:
            self.smtp.__exit__()


class _Stream:
    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.sent: list[DeliveryCommand] = []

    async def chunk(self) -> None:
        commands = [command("it-welcome", ContentType.EMAIL) for _ in range(CHUNK)]
        await self.producer.send(self.topic, commands)
        self.sent.extend(commands)
        await asyncio.sleep(PAUSE_S)

    async def chunks(self, n: int) -> None:
        for _ in range(n):
            await self.chunk()


async def _final_statuses(dsn: str, count: int, timeout_s: float) -> dict[uuid.UUID, str]:
    """Each delivery's state once ``count`` of them have reached a final one."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT command_id, status FROM deliveries")
        finally:
            await conn.close()
        statuses: dict[uuid.UUID, str] = {row["command_id"]: row["status"] for row in rows}
        if sum(status in FINAL for status in statuses.values()) >= count:
            return statuses
        assert asyncio.get_running_loop().time() < deadline, Counter(statuses.values())
        await asyncio.sleep(0.5)


async def _shut_down_mid_handoff(first: _Instance, stream: _Stream) -> None:
    first.inbox.release.clear()
    for _ in range(50):
        if first.inbox.holding.is_set():
            break
        await stream.chunk()
    assert first.inbox.holding.is_set(), "the first instance sent nothing"
    first.process.terminate()  # while its SMTP server holds the answer to DATA
    await stream.chunks(5)
    first.inbox.release.set()
    # uvicorn shuts the app down (the consumer leaves the group), then re-raises SIGTERM.
    assert await first.stop() == -signal.SIGTERM


async def _kill(first: _Instance, stream: _Stream) -> None:
    first.process.send_signal(signal.SIGUSR1)  # dies as it starts its next send
    for _ in range(50):
        if first.process.poll() is not None:
            break
        await stream.chunk()  # the stream goes on meanwhile
    assert await asyncio.to_thread(first.process.wait, 10) == -signal.SIGKILL


async def _rebalance(
    settings: Settings, dsn: str, leave: Callable[[_Instance, _Stream], Awaitable[None]]
) -> None:
    commands_topic, topics = await prepare(settings, dsn)
    prefix = commands_topic.removesuffix("delivery.commands")
    app_settings = settings.model_copy(update={"database_url": dsn})
    group = f"test-delivery-rebalance-{uuid.uuid4().hex[:6]}"
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    stream = _Stream(producer, commands_topic)
    first = _Instance(app_settings, prefix, group)
    second: _Instance | None = None
    try:
        assert await first.received() == 0  # up
        await stream.chunks(10)
        second = _Instance(app_settings, prefix, group)  # joins: a rebalance
        for _ in range(60):
            await stream.chunk()
            if await second.received() > 0:
                break
        assert await second.received() > 0, "the second instance was given no partition"
        # Both hold partitions: the first is given more of the stream too.
        first_at_join = await first.received()
        for _ in range(40):
            await stream.chunk()
            if await first.received() > first_at_join:
                break
        assert await first.received() > first_at_join, "the first instance was left no partition"
        await leave(first, stream)  # leaves: a rebalance, its partitions go to the second
        await stream.chunks(10)

        statuses = await _final_statuses(dsn, len(stream.sent), timeout_s=40)
        assert statuses == {c.command_id: "sent" for c in stream.sent}
        copies = Counter(first.inbox.by_message_id()) + Counter(second.inbox.by_message_id())
        assert copies == {f"<{c.command_id}@trayecto>": 1 for c in stream.sent}
        assert first.inbox.messages  # both instances sent some
        assert second.inbox.messages
        outcomes = [
            m
            for m in await read_topic(app_settings, topics.outcomes, len(stream.sent))
            if isinstance(m, DeliveryOutcome)
        ]
        assert Counter((o.command_id, o.status) for o in outcomes) == {
            (c.command_id, DeliveryStatus.SENT): 1 for c in stream.sent
        }
    finally:
        await producer.stop()
        try:
            await first.close()
        finally:
            if second is not None:
                await second.close()


async def test_second_joins_then_first_shuts_down_mid_handoff(
    settings: Settings, fresh_database: str
) -> None:
    await _rebalance(settings, fresh_database, _shut_down_mid_handoff)


async def test_second_joins_then_first_is_killed(settings: Settings, fresh_database: str) -> None:
    await _rebalance(settings, fresh_database, _kill)
