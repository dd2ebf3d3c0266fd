"""A real orchestrator (uvicorn on a free port) on a fresh database and its own topics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from services.orchestrator import create_app
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from services.orchestrator.topics import OrchestratorTopics
from shared.contract import WireMessage
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, read_topic, serve
from ..names import topic_prefix

ADMIN_TOKEN = "test-admin-" + uuid.uuid4().hex
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
"""The orchestrator's prospects API takes the admin token: the test clients send it."""


@dataclass
class Orchestration:
    url: str
    dsn: str
    settings: Settings
    topics: OrchestratorTopics
    producer: Producer
    client: httpx.AsyncClient

    async def send(self, *messages: WireMessage) -> None:
        await self.producer.send(self.topics.touchpoints, list(messages))

    async def publish_journey(self, yaml_text: str) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            version, _ = await publish(conn, load_journey(yaml_text), yaml_text)
        finally:
            await conn.close()
        return version

    async def messages(
        self, topic: str, expected: int, timeout_s: float = 15.0
    ) -> list[WireMessage]:
        return await read_topic(self.settings, topic, expected, timeout_s)

    async def wait_for(
        self, check: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition"
    ) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            result = await check()
            if result:
                return result
            assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.2)

    async def rows(self, query: str, *args: object) -> Sequence[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()


async def prepare(settings: Settings, dsn: str) -> OrchestratorTopics:
    await migrate(dsn)
    topics = OrchestratorTopics.prefixed(topic_prefix())
    await ensure_topics(settings, topics.all, partitions=3)
    return topics


Start = Callable[..., Awaitable[Orchestration]]


@pytest.fixture
async def start_orchestrator(settings: Settings, fresh_database: str) -> AsyncIterator[Start]:
    """Publishes the given journey YAMLs, then starts an orchestrator on them."""
    topics = await prepare(settings, fresh_database)
    app_settings = settings.model_copy(
        update={"database_url": fresh_database, "admin_token": SecretStr(ADMIN_TOKEN)}
    )
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    servers: list[tuple[Any, asyncio.Task[None]]] = []
    clients: list[httpx.AsyncClient] = []

    async def start(*journeys: str) -> Orchestration:
        conn = await asyncpg.connect(fresh_database)
        try:
            for text in journeys:
                await publish(conn, load_journey(text), text)
        finally:
            await conn.close()
        port = free_port()
        group = f"test-orchestrator-{uuid.uuid4().hex[:8]}"
        servers.append(await serve(create_app(app_settings, topics=topics, group=group), port))
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20, headers=ADMIN)
        clients.append(client)
        return Orchestration(
            f"http://127.0.0.1:{port}", fresh_database, app_settings, topics, producer, client
        )

    yield start
    for client in clients:
        await client.aclose()
    for server, task in servers:
        server.should_exit = True
        await task
    await producer.stop()
