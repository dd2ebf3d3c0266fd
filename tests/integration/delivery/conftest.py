"""A real delivery service on a fresh database, its own topics and a real SMTP server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.delivery import create_app
from services.delivery.worker import DeliveryTopics
from shared.contract import Channel, ContentType, DeliveryCommand, WireMessage
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, read_topic, serve
from ..names import topic_prefix
from .smtp_server import SmtpServer


@dataclass
class Delivery:
    dsn: str
    settings: Settings
    commands_topic: str
    topics: DeliveryTopics
    producer: Producer
    smtp: SmtpServer

    async def send(self, *commands: DeliveryCommand) -> None:
        await self.producer.send(self.commands_topic, list(commands))

    async def messages(
        self, topic: str, expected: int, timeout_s: float = 20.0
    ) -> list[WireMessage]:
        return await read_topic(self.settings, topic, expected, timeout_s)

    async def until(
        self, check: Callable[[], Any], timeout_s: float = 20.0, what: str = ""
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await check():
            assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
            await asyncio.sleep(0.2)

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()


def command(
    content: str,
    content_type: ContentType,
    *,
    prospect: str | None = None,
    locale: str = "es",
    channel: Channel = Channel.EMAIL,
    email: str | None = None,
) -> DeliveryCommand:
    prospect = prospect or f"p-{uuid.uuid4().hex[:8]}"
    return DeliveryCommand(
        prospect_id=prospect,
        command_id=uuid.uuid4(),
        journey="test",
        journey_version=1,
        step="send",
        content=content,
        content_type=content_type,
        channel=channel,
        locale=locale,
        recipient={
            "prospect_id": prospect,
            "email": email or f"{prospect}@example.com",
            "first_name": "Ana",
        },
        issued_at=datetime.now(UTC),
    )


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


async def prepare(settings: Settings, dsn: str) -> tuple[str, DeliveryTopics]:
    await migrate(dsn)
    prefix = topic_prefix()
    topics = DeliveryTopics(
        outcomes=f"{prefix}delivery.outcomes", dead_letters=f"{prefix}delivery.dlq"
    )
    commands = f"{prefix}delivery.commands"
    await ensure_topics(settings, [commands, topics.outcomes, topics.dead_letters], partitions=3)
    return commands, topics


@pytest.fixture
async def delivery(
    settings: Settings, fresh_database: str, smtp: SmtpServer
) -> AsyncIterator[Delivery]:
    commands, topics = await prepare(settings, fresh_database)
    app_settings = settings.model_copy(
        update={
            "database_url": fresh_database,
            "smtp_url": smtp.url,
            "delivery_retry_base_s": 0.3,
            "delivery_max_attempts": 3,
            "delivery_rate_limits": "email=1000,webhook=1000",
        }
    )
    port = free_port()
    group = f"test-delivery-{uuid.uuid4().hex[:8]}"
    server, task = await serve(
        create_app(app_settings, commands_topic=commands, topics=topics, group=group), port
    )
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    yield Delivery(fresh_database, app_settings, commands, topics, producer, smtp)
    await producer.stop()
    server.should_exit = True
    await task
