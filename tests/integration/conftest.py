"""Real services for integration tests.

In order of preference: the ``TRAYECTO_*`` environment (a stack someone runs), a Docker
engine through testcontainers, or the local process stack (``trayecto stack up``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from rich.console import Console

from shared import stack
from shared.kafka import delete_topics, list_topics
from shared.settings import Settings

from .names import PREFIX, topic_name
from .private_postgres import PrivatePostgres


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    """The services to test against; the session's throwaway topics are deleted after it.

    Thousands of leftover topics would make every later broker start slow to serve.
    Every test topic is named under the session's prefix (:mod:`.names`).
    """
    for running in _services():
        yield running
        ours = [name for name in asyncio.run(list_topics(running)) if name.startswith(PREFIX)]
        asyncio.run(delete_topics(running, sorted(ours)))


def _services() -> Iterator[Settings]:
    if "TRAYECTO_KAFKA_BOOTSTRAP" in os.environ and "TRAYECTO_DATABASE_URL" in os.environ:
        yield Settings()
    elif _docker_engine():
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.postgres import PostgresContainer

        with KafkaContainer().with_kraft() as kafka, PostgresContainer("postgres:16") as pg:
            yield Settings(
                kafka_bootstrap=kafka.get_bootstrap_server(),
                database_url=pg.get_connection_url(driver=None),
            )
    else:
        local = Settings()
        stack.up(local, Console(quiet=True))
        yield local


@pytest.fixture
async def fresh_database(settings: Settings) -> AsyncIterator[str]:
    """A new, empty database on the test server; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = settings.database_url.rpartition("/")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(settings.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return topic_name()


@pytest.fixture
def private_postgres(settings: Settings) -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own, to stop, kill or fill; removed afterwards."""
    server = PrivatePostgres(settings)
    server.prepare()
    server.start()
    try:
        yield server
    finally:
        server.remove()
