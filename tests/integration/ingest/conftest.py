"""A real ingest server (uvicorn on a free port) on a fresh database and its own topic."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.ingest import create_app
from services.ingest.sources import add_source
from shared.contract import WireMessage
from shared.db import migrate
from shared.kafka import decode, ensure_topics, topic_partitions
from shared.settings import Settings
from shared.tracking import LinkClaims, LinkKind, expiry, link_url

from ..names import topic_name

TRAYECTO = Path(sys.executable).with_name("trayecto")
LINK_TARGET = "https://example.com/pricing?plan=pro"
"""Where the test tracking links lead by default."""
"""The console script of this environment."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Ingest:
    url: str
    topic: str
    dsn: str
    settings: Settings
    write_key: str
    client: httpx.AsyncClient

    async def post(self, path: str, body: object, key: str | None = None) -> httpx.Response:
        return await self.client.post(path, json=body, auth=(key or self.write_key, ""))

    async def messages(self, expected: int, timeout_s: float = 10.0) -> list[WireMessage]:
        """Everything on the topic, once at least ``expected`` messages are there."""
        return await read_topic(self.settings, self.topic, expected, timeout_s)

    async def records(
        self, expected: int, timeout_s: float = 10.0
    ) -> list[tuple[bytes | None, WireMessage]]:
        """Like :meth:`messages`, each with its Kafka record key."""
        return await read_records(self.settings, self.topic, expected, timeout_s)

    def link_claims(self, **changes: object) -> LinkClaims:
        """A tracking link's claims for a new prospect, valid for the link lifetime."""
        fields: dict[str, object] = {
            "prospect_id": f"p-{uuid.uuid4().hex[:12]}",
            "journey": "onboarding",
            "journey_version": 2,
            "step": "welcome",
            "content": "welcome-email",
            "command_id": str(uuid.uuid4()),
            "url": LINK_TARGET,
            "expires_at": expiry(self.settings, time.time()),
            **changes,
        }
        return LinkClaims.model_validate(fields)

    def link_path(self, kind: LinkKind, claims: LinkClaims) -> str:
        """The path of the signed link of ``kind`` on this ingest."""
        url = link_url(self.settings, kind, claims)
        assert url.startswith(self.url + "/t/")
        return url.removeprefix(self.url)

    async def cli(self, *args: str) -> tuple[int, str, str]:
        """``trayecto ARGS`` against this ingest's database and broker: (exit code, out, err)."""
        env = {
            **os.environ,
            "TRAYECTO_DATABASE_URL": self.dsn,
            "TRAYECTO_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "COLUMNS": "200",
        }
        process = await asyncio.create_subprocess_exec(
            str(TRAYECTO),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()


async def read_topic(
    settings: Settings, topic: str, expected: int, timeout_s: float = 10.0
) -> list[WireMessage]:
    return [message for _, message in await read_records(settings, topic, expected, timeout_s)]


async def read_records(
    settings: Settings, topic: str, expected: int, timeout_s: float = 10.0
) -> list[tuple[bytes | None, WireMessage]]:
    """(Kafka key, message) of everything on the topic, once at least ``expected`` are."""
    count = (await topic_partitions(settings, [topic]))[topic]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[tuple[bytes | None, WireMessage]] = []

        def take(batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
            for records in batches.values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    found.append((r.key, decode(r.value or b"", headers)))

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            take(await consumer.getmany(timeout_ms=200))
            if len(found) >= expected:
                # Give anything unexpected (a duplicate) a moment to show up too.
                take(await consumer.getmany(timeout_ms=500))
                return found
        return found
    finally:
        await consumer.stop()


async def serve(app: object, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task


@pytest.fixture
async def ingest(settings: Settings, fresh_database: str) -> AsyncIterator[Ingest]:
    async with running_ingest(settings, fresh_database) as running:
        yield running


@contextlib.asynccontextmanager
async def running_ingest(settings: Settings, fresh_database: str) -> AsyncIterator[Ingest]:
    """Ingest on a free port and the given (new) database, with one source."""
    await migrate(fresh_database)
    topic = topic_name("touchpoints")
    await ensure_topics(settings, [topic], partitions=3)
    conn = await asyncpg.connect(fresh_database)
    try:
        source = await add_source(conn, "test-source")
    finally:
        await conn.close()
    port = free_port()
    app_settings = settings.model_copy(
        update={
            "database_url": fresh_database,
            "ingest_port": port,
            "public_url": f"http://127.0.0.1:{port}",
        }
    )
    server, task = await serve(create_app(app_settings, touchpoints_topic=topic), port)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        yield Ingest(url, topic, fresh_database, app_settings, source.write_key, client)
    server.should_exit = True
    await task
