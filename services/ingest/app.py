"""Composition root of the ingest service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema

from shared.db import create_pool
from shared.http import install_error_handlers
from shared.kafka.producer import Producer
from shared.ratelimit import RateLimiter
from shared.redaction import install_redaction
from shared.service import (
    add_ops_routes,
    configure_logging,
    database_check,
    kafka_check,
    service_registry,
    tune_gc,
)
from shared.settings import Settings
from shared.topics import TOUCHPOINTS

from . import admin, events, leads, links, prospects
from .outage import install_outage_handler
from .pipeline import Ingestor
from .segment import STORABLE_JSON, Alias, Batch, Identify, Page, Track
from .sources import SourceAuth
from .state import IngestState

log = logging.getLogger(__name__)
CLEANUP_INTERVAL_S = 3600.0


def create_app(settings: Settings, *, touchpoints_topic: str = TOUCHPOINTS) -> FastAPI:
    """The ingest app; tests pass their own topic name."""
    # Links carry their token in the path and forms their write key in the query: the
    # access log of whichever server runs this app must not keep them.
    install_redaction(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(settings)
        producer = Producer(
            settings, client_id="ingest", timeout_s=settings.ingest_publish_timeout_s
        )
        await producer.start()
        ingestor = Ingestor(pool, producer, settings, topic=touchpoints_topic)
        app.state.ingest = IngestState(
            settings=settings,
            pool=pool,
            auth=SourceAuth(pool),
            ingestor=ingestor,
            limiter=RateLimiter(settings.ingest_rate_limit),
        )
        cleanup = asyncio.create_task(_forget_old_messages(ingestor))
        tune_gc()  # also in worker processes, which do not go through run_http
        try:
            yield
        finally:
            cleanup.cancel()
            await producer.stop()
            await pool.close()

    app = FastAPI(
        title="Trayecto ingest",
        version="0.1.0",
        description="Segment-compatible event API, lead capture and tracking links.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_outage_handler(app)
    add_ops_routes(
        app,
        "ingest",
        service_registry(),
        {"kafka": kafka_check(settings), "database": database_check(settings)},
    )
    app.include_router(events.router)
    files = settings.content_dir / "files"
    if files.is_dir():  # PDFs and other downloads the tracking links redirect to
        app.mount("/content/files", StaticFiles(directory=files), name="content-files")
    app.include_router(links.router)
    app.include_router(leads.router)
    app.include_router(admin.router)
    app.include_router(prospects.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def from_environment() -> FastAPI:
    """App factory for worker processes: settings from the environment."""
    settings = Settings()
    configure_logging(settings, "ingest")  # a worker process starts with none
    return create_app(settings)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas of the bodies the handlers parse themselves."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        _, schemas = models_json_schema(
            [(m, "validation") for m in (Track, Page, Identify, Alias, Batch)],
            ref_template="#/components/schemas/{model}",
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(
            {**schemas["$defs"], "StorableJson": STORABLE_JSON}
        )
        app.openapi_schema = document
    return app.openapi_schema


async def _forget_old_messages(ingestor: Ingestor) -> None:
    while True:
        try:
            forgotten = await ingestor.forget_old_messages()
            if forgotten:
                log.info("forgot %d messageIds older than the dedupe window", forgotten)
        except Exception:  # a failed cleanup must not stop the service; next hour retries
            log.exception("cleaning up old messageIds failed")
        await asyncio.sleep(CLEANUP_INTERVAL_S)
