"""``trayecto init``: prepare a deployment's Kafka topics and database schema.

What the compose ``init`` service and the Kubernetes ``trayecto-init`` Job run
before the services start; safe to run any number of times.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import typer

from ..db import MigrationError, migrate
from ..kafka import ensure_topics, wait_for_kafka
from ..settings import Settings
from .common import console, friendly_errors, load_settings


def init(
    wait: float = typer.Option(120.0, help="Seconds to wait for Kafka and PostgreSQL to answer"),
) -> None:
    """Wait for Kafka and PostgreSQL, apply migrations, create missing topics."""
    settings = load_settings()
    with friendly_errors(MigrationError, OSError, TimeoutError, asyncpg.PostgresError):
        applied, created = asyncio.run(_init(settings, wait))
    for name in applied:
        console.print(f"[green]applied[/] migration {name}")
    for name in created:
        console.print(f"[green]created[/] topic {name} ({settings.topic_partitions} partitions)")
    console.print("Kafka topics and database schema are ready")


async def _init(settings: Settings, wait_s: float) -> tuple[list[str], list[str]]:
    await wait_for_kafka(settings.kafka_bootstrap, wait_s)
    applied = await _migrate_when_up(settings.database_url, wait_s)
    created = await ensure_topics(settings)
    return applied, created


async def _migrate_when_up(dsn: str, wait_s: float) -> list[str]:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await migrate(dsn)
        except (OSError, asyncpg.CannotConnectNowError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)
