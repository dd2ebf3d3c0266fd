"""Composition root of the delivery service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI

from shared import outbox
from shared.contract import DeliveryCommand
from shared.db import create_pool
from shared.kafka.producer import Producer
from shared.service import (
    add_ops_routes,
    database_check,
    kafka_check,
    service_registry,
    supervised,
)
from shared.settings import Settings
from shared.topics import DELIVERY_COMMANDS

from .content import Catalogue, CatalogueError, load_catalogue
from .content.store import latest_version, load_published
from .inbox import GROUP, consume_forever
from .render import render
from .worker import DeliveryTopics, Worker

log = logging.getLogger(__name__)
RELAY_PAUSE_S = 0.05
"""While sends go on, outcomes are relayed every 50 ms, many per round (see relay_forever)."""


class PublishedContent:
    """The catalogue deliveries render from: the latest published version, kept current."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.version: int | None = None

    async def refresh(self, pool: asyncpg.Pool, store: Path, workdir: Path) -> None:
        async with pool.acquire() as conn:
            latest = await latest_version(conn)
            if latest is None or latest == self.version:
                return
            self.catalogue = await load_published(conn, latest, store, workdir)
        self.version = latest
        log.info("rendering from content version %d", latest)

    async def refresh_forever(self, pool: asyncpg.Pool, store: Path, workdir: Path) -> None:
        while True:
            await asyncio.sleep(5)
            try:
                await self.refresh(pool, store, workdir)
            except (OSError, asyncpg.PostgresError, CatalogueError):
                log.exception("loading the published content failed; keeping the current one")


def create_app(
    settings: Settings,
    *,
    commands_topic: str = DELIVERY_COMMANDS,
    topics: DeliveryTopics | None = None,
    group: str = GROUP,
    after_handoff: Callable[[int], Awaitable[None]] | None = None,
) -> FastAPI:
    """Stores delivery commands, sends them once each, publishes every outcome."""
    topics = topics or DeliveryTopics()
    registry = service_registry()
    # The checkout's catalogue until a published version is found: a broken one stops the start.
    content = PublishedContent(load_catalogue(settings.content_dir))

    def render_command(command: DeliveryCommand, now: datetime) -> Any:
        return render(command, content.catalogue, settings, now)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings)
        producer = Producer(settings, client_id="delivery", timeout_s=10.0)
        await producer.start()
        relay_wake = asyncio.Event()
        workdir = tempfile.TemporaryDirectory(prefix="trayecto-content-")
        await content.refresh(pool, settings.content_dir, Path(workdir.name))
        worker = Worker(settings, pool, render_command, topics, relay_wake)
        worker.after_handoff = after_handoff
        receiving = supervised("delivery-inbox", consume_forever(
            settings, pool, topics, relay_wake,
            commands_topic=commands_topic, group=group, registry=registry,
        ))  # fmt: skip
        sending = supervised("delivery-worker", worker.run())
        relay_stop = asyncio.Event()
        relaying = supervised(
            "delivery-relay",
            outbox.relay_forever(
                pool, producer, relay_wake, stop=relay_stop, pause_s=RELAY_PAUSE_S
            ),
        )
        tasks = [
            sending,
            supervised(
                "delivery-content",
                content.refresh_forever(pool, settings.content_dir, Path(workdir.name)),
            ),
            relaying,
        ]
        try:
            yield
        finally:
            # The consumer leaves the group at once (its partitions move on); the sends
            # under way finish (each bounded by the SMTP timeout): one cancelled during
            # DATA would be left in doubt, never resent. Then their outcomes are relayed,
            # and the rest stops.
            receiving.cancel()
            worker.stop()
            await asyncio.wait([sending], timeout=settings.smtp_timeout_s + 5)
            relay_stop.set()
            relay_wake.set()
            await asyncio.wait([relaying], timeout=10)
            for task in tasks:  # not the consumer again: that would cut its leaving short
                task.cancel()
            await asyncio.gather(receiving, *tasks, return_exceptions=True)
            await producer.stop()
            await pool.close()
            workdir.cleanup()

    app = FastAPI(title="Trayecto delivery", version="0.1.0", lifespan=lifespan)
    add_ops_routes(
        app,
        "delivery",
        registry,
        {"kafka": kafka_check(settings), "database": database_check(settings)},
    )
    return app
