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
    asyncio.run(_serve(name, settings))


async def _serve(name: ServiceName, settings: Settings) -> None:
    module = importlib.import_module(f"services.{name}")
    app = module.create_app(settings)
    await run_http(app, settings, settings.service_port(name))
