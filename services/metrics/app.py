"""Composition root of the metrics service: counter, gauges, funnel API, journey map."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import FastAPI

from shared.db import create_pool
from shared.http import install_error_handlers
from shared.kafka.consumer import consume_batches
from shared.service import (
    add_ops_routes,
    database_check,
    kafka_check,
    service_registry,
    supervised,
)
from shared.settings import Settings

from .api import funnel_router
from .consumer import GROUP, Counter, KnownJourneys, forget_old_ids
from .exporter import Exporter
from .gauges import KafkaGauges, database_gauges
from .map.routes import map_router
from .topics import MetricsTopics

SERVICE_GROUPS = ("trayecto-orchestrator", "trayecto-delivery", GROUP)
"""Consumer groups whose lag is exported."""


def create_app(
    settings: Settings,
    *,
    topics: MetricsTopics | None = None,
    group: str = GROUP,
    lag_groups: Sequence[str] = SERVICE_GROUPS,
    after_commit: Callable[[int], None] | None = None,
) -> FastAPI:
    """Counts the topics into durable series; serves them, the gauges and the funnel."""
    topics = topics or MetricsTopics()
    registry = service_registry()
    exporter = Exporter()
    registry.register(exporter)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings)
        app.state.pool = pool
        journeys = KnownJourneys()
        async with pool.acquire() as conn:
            await journeys.load(conn)
        counter = Counter(pool, journeys, consumer=group, after_commit=after_commit)
        kafka = KafkaGauges(settings, topics.watched, lag_groups)
        exporter.attach(pool, functools.partial(database_gauges, pool), kafka.collect)
        consumer = consume_batches(
            settings, topics.inputs, counter.handle, group=group, client_id="metrics",
            registry=registry,
        )  # fmt: skip
        tasks = [
            supervised("metrics-consumer", consumer),
            supervised("metrics-retention", forget_old_ids(pool, group)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await kafka.close()
            await pool.close()

    app = FastAPI(title="Trayecto metrics", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    add_ops_routes(
        app,
        "metrics",
        registry,
        {"kafka": kafka_check(settings), "database": database_check(settings)},
        before_scrape=exporter.refresh,
    )
    app.include_router(funnel_router())
    app.include_router(map_router(settings))
    return app
