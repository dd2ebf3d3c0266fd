"""One service of the fault campaign in its own process, on topics under a prefix.

``python -m tests.integration.fault_campaign.server SERVICE PORT PREFIX``

The consumer group is derived from the prefix, so a restarted process rejoins the group
its killed predecessor was in. Everything else (the throwaway database, the SMTP server,
the public URL) comes from the ``TRAYECTO_*`` environment, as for ``trayecto serve``.
"""

from __future__ import annotations

import asyncio
import sys

from fastapi import FastAPI

from services.delivery import create_app as delivery_app
from services.delivery.worker import DeliveryTopics
from services.ingest import create_app as ingest_app
from services.metrics import create_app as metrics_app
from services.metrics.topics import MetricsTopics
from services.orchestrator import create_app as orchestrator_app
from services.orchestrator.topics import OrchestratorTopics
from shared.service import configure_logging, run_http
from shared.settings import Settings

SERVICES = ("ingest", "orchestrator", "delivery", "metrics")


def group(prefix: str, service: str) -> str:
    """The consumer group of ``service`` in the run under ``prefix``."""
    return f"{prefix}{service}"


def build(service: str, settings: Settings, prefix: str) -> FastAPI:
    topics = OrchestratorTopics.prefixed(prefix)
    if service == "ingest":
        return ingest_app(settings, touchpoints_topic=topics.touchpoints)
    if service == "orchestrator":
        return orchestrator_app(settings, topics=topics, group=group(prefix, service))
    if service == "delivery":
        return delivery_app(
            settings,
            commands_topic=topics.commands,
            topics=DeliveryTopics(topics.outcomes, f"{prefix}delivery.dlq"),
            group=group(prefix, service),
        )
    if service == "metrics":
        return metrics_app(
            settings,
            topics=MetricsTopics.prefixed(prefix),
            group=group(prefix, service),
            lag_groups=[group(prefix, s) for s in ("orchestrator", "delivery", "metrics")],
        )
    raise SystemExit(f"unknown service {service!r}; one of {', '.join(SERVICES)}")


def main() -> None:
    service, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    settings = Settings()
    configure_logging(settings, service)
    asyncio.run(run_http(build(service, settings, prefix), settings, port))


if __name__ == "__main__":
    main()
