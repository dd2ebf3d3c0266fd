"""``trayecto serve <service>``: one service in the foreground (what containers run)."""

from __future__ import annotations

import asyncio
import importlib
from enum import StrEnum

import typer

from ..service import configure_logging, run_http
from ..settings import ServiceName, Settings
from .common import load_settings


class Service(StrEnum):
    ingest = "ingest"
    orchestrator = "orchestrator"
    delivery = "delivery"
    metrics = "metrics"


def serve(service: Service = typer.Argument(..., help="Which service to run")) -> None:  # noqa: B008
    """Run one service until SIGINT/SIGTERM."""
    settings = load_settings()
    name: ServiceName = service.value
    configure_logging(settings, name)
    if name == "ingest" and settings.ingest_workers > 1:
        _serve_workers(settings)
    else:
        asyncio.run(_serve(name, settings))


def _serve_workers(settings: Settings) -> None:
    """Several ingest processes on one port (each builds the app from the environment)."""
    import uvicorn

    uvicorn.run(
        "services.ingest.app:from_environment",
        factory=True,
        host=settings.http_host,
        port=settings.ingest_port,
        workers=settings.ingest_workers,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


async def _serve(name: ServiceName, settings: Settings) -> None:
    module = importlib.import_module(f"services.{name}")
    app = module.create_app(settings)
    await run_http(app, settings, settings.service_port(name))
