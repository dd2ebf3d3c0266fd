"""A real delivery service on a fresh database, its own topics and a real SMTP server."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.delivery import create_app
from services.delivery.worker import DeliveryTopics
from shared.contract import Channel, ContentType, DeliveryCommand, WireMessage
from shared.db import migrate
from shared.kafka import decode, ensure_topics
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

    async def dead_letters(
        self, expected: int, timeout_s: float = 20.0
    ) -> list[tuple[DeliveryCommand, str]]:
        """The dead-lettered commands with the reason header of each record."""
        found: list[tuple[DeliveryCommand, str]] = []
        consumer = AIOKafkaConsumer(
            self.topics.dead_letters,
            bootstrap_servers=self.settings.kafka_bootstrap.split(","),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while len(found) < expected and asyncio.get_running_loop().time() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        headers = {k: v.decode() for k, v in r.headers}
                        letter = decode(r.value or b"", headers)
                        assert isinstance(letter, DeliveryCommand)
                        found.append((letter, headers["trayecto-dlq-reason"]))
        finally:
            await consumer.stop()
        return found

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


@dataclass(frozen=True)
class Post:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float
    """When it arrived (``time.monotonic``)."""


@dataclass
class Receiver:
    """A webhook receiver on a free port; ``answers`` scripts the first status codes."""

    url: str
    answers: list[int] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        status = self.answers.pop(0) if self.answers else 200
        self.posts.append(Post(dict(request.headers), body, status, time.monotonic()))
        return Response(status_code=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    hook = Receiver(f"http://127.0.0.1:{port}/hooks/trayecto")
    app = Starlette(routes=[Route("/hooks/trayecto", hook.handle, methods=["POST"])])
    server, task = await serve(app, port)
    yield hook
    server.should_exit = True
    await task


def command(
    content: str,
    content_type: ContentType,
    *,
    prospect: str | None = None,
    locale: str = "es",
    channel: Channel = Channel.EMAIL,
    email: str | None = None,
    variant: str | None = None,
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
        variant=variant,
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


async def prepare(
    settings: Settings, dsn: str, prefix: str | None = None
) -> tuple[str, DeliveryTopics]:
    """``dsn`` migrated; the delivery topics under ``prefix`` (default: a new one)."""
    await migrate(dsn)
    prefix = prefix or topic_prefix()
    topics = DeliveryTopics(
        outcomes=f"{prefix}delivery.outcomes", dead_letters=f"{prefix}delivery.dlq"
    )
    commands = f"{prefix}delivery.commands"
    await ensure_topics(settings, [commands, topics.outcomes, topics.dead_letters], partitions=3)
    return commands, topics


@contextlib.asynccontextmanager
async def running_delivery(
    settings: Settings,
    dsn: str,
    smtp: SmtpServer,
    *,
    prefix: str | None = None,
    **overrides: object,
) -> AsyncIterator[Delivery]:
    """The delivery service on ``dsn`` with its own topics (or those under ``prefix``,
    shared with other services), sending to ``smtp``; quick retries (0.3 s base, 3
    attempts) and no pacing to speak of unless ``overrides`` say."""
    commands, topics = await prepare(settings, dsn, prefix)
    app_settings = settings.model_copy(
        update={
            "database_url": dsn,
            "smtp_url": smtp.url,
            "delivery_retry_base_s": 0.3,
            "delivery_max_attempts": 3,
            "delivery_rate_limits": "email=1000,webhook=1000",
            **overrides,
        }
    )
    group = f"test-delivery-{uuid.uuid4().hex[:8]}"
    server, task = await serve(
        create_app(app_settings, commands_topic=commands, topics=topics, group=group), free_port()
    )
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        yield Delivery(dsn, app_settings, commands, topics, producer, smtp)
    finally:
        await producer.stop()
        server.should_exit = True
        await task


@pytest.fixture
async def delivery(
    settings: Settings, fresh_database: str, smtp: SmtpServer
) -> AsyncIterator[Delivery]:
    async with running_delivery(settings, fresh_database, smtp) as running:
        yield running
