"""What every service's HTTP side shares: /healthz, /metrics and the uvicorn runner."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import uvicorn
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)

from .redaction import install_redaction
from .settings import ServiceName, Settings

Check = Callable[[], Awaitable[bool]]


def add_ops_routes(
    app: FastAPI,
    service: ServiceName,
    registry: CollectorRegistry,
    checks: Mapping[str, Check],
    *,
    stub_note: str | None = None,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """``/healthz`` (503 while a dependency check fails), ``/livez`` and ``/metrics``.

    ``before_scrape`` refreshes values that collectors cannot await themselves.
    ``/livez`` answers while the event loop does, whatever the dependencies: what a
    liveness probe asks, so a Kafka outage makes pods unready, not restarted.
    """

    @app.get("/livez", tags=["ops"], summary="Liveness: the process answers")
    async def livez() -> dict[str, str]:
        return {"service": service, "status": "alive"}

    @app.get(
        "/healthz",
        tags=["ops"],
        summary="Readiness: 200 when every dependency answers",
        responses={503: {"description": "A dependency check fails"}},
    )
    async def healthz() -> JSONResponse:
        results = dict(
            zip(checks, await asyncio.gather(*(check() for check in checks.values())), strict=True)
        )
        ok = all(results.values())
        body: dict[str, object] = {
            "service": service,
            "status": "ok" if ok else "degraded",
            "checks": {name: "ok" if passed else "failing" for name, passed in results.items()},
        }
        if stub_note is not None:
            body["stub"] = True
            body["note"] = stub_note
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def metrics() -> Response:
        if before_scrape is not None:
            await before_scrape()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for request-heavy services.

    Objects alive after start-up (modules, app, pools) are frozen out of collection,
    and the youngest generation is collected every 50 000 allocations instead of 700:
    a batch request allocates thousands of short-lived objects that reference counting
    frees anyway.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def run_http(app: FastAPI, settings: Settings, port: int) -> None:
    """Serve an ASGI app until cancelled or signalled."""
    tune_gc()
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=port,
        log_level=settings.log_level.lower(),
        access_log=settings.log_level == "DEBUG",  # tokens in paths are redacted
        lifespan="on",
    )
    await uvicorn.Server(config).serve()


def configure_logging(settings: Settings, service: str) -> None:
    """The service's log format, with secrets redacted from every line (shared.redaction)."""
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(asctime)s %(levelname)-7s {service:<12} %(name)s: %(message)s",
    )
    install_redaction(settings)


def kafka_check(settings: Settings) -> Check:
    from .kafka.admin import kafka_ready

    async def check() -> bool:
        return await kafka_ready(settings.kafka_bootstrap, timeout_s=2.0)

    return check


def database_check(settings: Settings) -> Check:
    import asyncpg

    async def check() -> bool:
        try:
            conn = await asyncpg.connect(settings.database_url, timeout=2)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        try:
            return bool(await conn.fetchval("SELECT 1") == 1)
        finally:
            await conn.close()

    return check


def service_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors every service exports."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(PLATFORM_COLLECTOR)
    registry.register(GC_COLLECTOR)
    return registry


def stub_app(service: ServiceName, settings: Settings, note: str) -> FastAPI:
    """A service that so far only reports its health and metrics, and says so."""
    registry = service_registry()
    app = FastAPI(title=f"Trayecto {service}", version="0.1.0")
    add_ops_routes(
        app,
        service,
        registry,
        {"kafka": kafka_check(settings), "database": database_check(settings)},
        stub_note=note,
    )
    return app


def supervised(name: str, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run a service's background loop; if it crashes, make the process exit.

    A loop that died would silently stop the service's work while /healthz still
    answers: exiting lets the supervisor (``trayecto up``, compose, Kubernetes) restart it.
    """

    async def guard() -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            logging.getLogger(__name__).critical("%s loop crashed; exiting", name, exc_info=True)
            os.kill(os.getpid(), signal.SIGTERM)

    return asyncio.create_task(guard(), name=name)
