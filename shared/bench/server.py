"""A service run for a benchmark in its own process(es), on its own database and topics.

``python -m shared.bench.server ingest PORT TOPIC WORKERS``
``python -m shared.bench.server http-floor PORT WORKERS``
``python -m shared.bench.server orchestrator PORT PREFIX GROUP``
``python -m shared.bench.server delivery PORT PREFIX GROUP``

Other settings (the throwaway database, and for delivery the SMTP server, rate limits
and concurrency, among them) come from the environment.
"""

from __future__ import annotations

import asyncio
import os
import sys

import uvicorn
from fastapi import FastAPI, Request

from services.delivery import create_app as delivery_app
from services.delivery.worker import DeliveryTopics
from services.ingest import create_app as ingest_app
from services.orchestrator import create_app as orchestrator_app
from services.orchestrator.topics import OrchestratorTopics
from shared.service import configure_logging, run_http
from shared.settings import Settings
from shared.topics import DELIVERY_COMMANDS, DELIVERY_DLQ, DELIVERY_OUTCOMES

_TOPIC_VARIABLE = "TRAYECTO_BENCH_TOPIC"
USAGE = (
    "usage: python -m shared.bench.server ingest PORT TOPIC WORKERS\n"
    "       python -m shared.bench.server http-floor PORT WORKERS\n"
    "       python -m shared.bench.server orchestrator PORT PREFIX GROUP\n"
    "       python -m shared.bench.server delivery PORT PREFIX GROUP"
)


def bench_app() -> FastAPI:
    """Factory each ingest worker process calls; the parent passes the topic in the environment."""
    return ingest_app(Settings(), touchpoints_topic=os.environ[_TOPIC_VARIABLE])


def _workers(factory: str, port: int, workers: int) -> None:
    """The app ``factory`` (a name in this module) in ``workers`` uvicorn processes."""
    uvicorn.run(
        f"shared.bench.server:{factory}",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


def _ingest(port: int, topic: str, workers: int) -> None:
    os.environ[_TOPIC_VARIABLE] = topic
    _workers("bench_app", port, workers)


def floor_app() -> FastAPI:
    """The HTTP floor: ``POST /v1/track`` on the same server and framework as ingest,
    reading the body and answering as ingest does, with nothing else done."""
    app = FastAPI()

    @app.post("/v1/track")
    async def track(request: Request) -> dict[str, object]:
        await request.body()
        return {"success": True, "published": 1, "duplicates": 0}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _orchestrator(port: int, prefix: str, group: str) -> None:
    """As ``trayecto serve orchestrator`` runs it, on prefixed topics and its own group."""
    settings = Settings()
    configure_logging(settings, "orchestrator")
    app = orchestrator_app(settings, topics=OrchestratorTopics.prefixed(prefix), group=group)
    asyncio.run(run_http(app, settings, port))


def _delivery(port: int, prefix: str, group: str) -> None:
    """As ``trayecto serve delivery`` runs it, on prefixed topics and its own group."""
    settings = Settings()
    configure_logging(settings, "delivery")
    topics = DeliveryTopics(outcomes=prefix + DELIVERY_OUTCOMES, dead_letters=prefix + DELIVERY_DLQ)
    app = delivery_app(
        settings, commands_topic=prefix + DELIVERY_COMMANDS, topics=topics, group=group
    )
    asyncio.run(run_http(app, settings, port))


def main() -> None:
    match sys.argv[1:]:
        case ["ingest", port, topic, workers]:
            _ingest(int(port), topic, int(workers))
        case ["http-floor", port, workers]:
            _workers("floor_app", int(port), int(workers))
        case ["orchestrator", port, prefix, group]:
            _orchestrator(int(port), prefix, group)
        case ["delivery", port, prefix, group]:
            _delivery(int(port), prefix, group)
        case _:
            sys.exit(USAGE)


if __name__ == "__main__":
    main()
