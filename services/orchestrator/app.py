"""Composition root of the orchestrator service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import asyncpg
from fastapi import FastAPI

from shared import outbox
from shared.db import create_pool
from shared.http import install_error_handlers
from shared.kafka.producer import Producer
from shared.service import (
    add_ops_routes,
    database_check,
    kafka_check,
    service_registry,
    supervised,
)
from shared.settings import Settings

from . import api
from .catalog import JourneyCatalog
from .processor import CONSUMER
from .runtime import GROUP, Orchestrator, RuntimeMetrics
from .timers import fire_forever
from .topics import OrchestratorTopics

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    topics: OrchestratorTopics | None = None,
    group: str = GROUP,
    after_commit: Callable[[int], None] | None = None,
) -> FastAPI:
    """The orchestrator: consumer, timer claimer, outbox relay and the prospects API."""
    topics = topics or OrchestratorTopics()
    registry = service_registry()
    metrics = RuntimeMetrics(registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings)
        producer = Producer(settings, client_id="orchestrator", timeout_s=10.0)
        await producer.start()
        catalog = JourneyCatalog()
        await catalog.refresh(pool)
        relay_wake = asyncio.Event()
        app.state.pool = pool
        orchestrator = Orchestrator(
            settings,
            pool,
            producer,
            catalog,
            topics,
            metrics,
            relay_wake,
            group=group,
            after_commit=after_commit,
        )
        app.state.orchestrator = orchestrator
        tasks = [
            supervised("orchestrator-consumer", orchestrator.run()),
            supervised("orchestrator-timers", fire_forever(pool, topics, relay_wake)),
            supervised("orchestrator-relay", outbox.relay_forever(pool, producer, relay_wake)),
            supervised("orchestrator-journeys", catalog.refresh_forever(pool)),
            supervised("orchestrator-retention", _prune_forever(pool)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await producer.stop()
            await pool.close()

    app = FastAPI(title="Trayecto orchestrator", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    add_ops_routes(
        app,
        "orchestrator",
        registry,
        {"kafka": kafka_check(settings), "database": database_check(settings)},
    )
    app.include_router(api.router)
    return app


DEDUPE_RETENTION = timedelta(days=14)
"""Longer than Kafka keeps records (7 days by default): no redelivery can be older."""
OUTBOX_RETENTION = timedelta(days=1)


async def _prune_forever(pool: asyncpg.Pool, interval_s: float = 3600.0) -> None:
    while True:
        try:
            async with pool.acquire() as conn:
                await conn.execute(
                    "DELETE FROM processed_events WHERE consumer = $1"
                    " AND processed_at < now() - $2::interval",
                    CONSUMER,
                    DEDUPE_RETENTION,
                )
                await outbox.prune(conn, OUTBOX_RETENTION)
        except (OSError, asyncpg.PostgresError):
            log.exception("pruning old dedupe and outbox rows failed; next round retries")
        await asyncio.sleep(interval_s)
