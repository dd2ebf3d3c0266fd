"""FastStream Kafka broker factory with the producer guarantees every service needs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from ..contract import WireMessage
from ..settings import Settings
from .codec import encode


def make_broker(
    settings: Settings,
    *,
    client_id: str,
    registry: CollectorRegistry | None = None,
    middlewares: Sequence[Any] = (),
) -> KafkaBroker:
    """A broker whose producer waits for all in-sync replicas and never duplicates.

    ``acks="all"`` + idempotence: a send is acknowledged only once it is durable, and a
    producer retry after a lost acknowledgement does not write the record twice.
    """
    all_middlewares = list(middlewares)
    if registry is not None:
        from faststream.kafka.prometheus import KafkaPrometheusMiddleware

        all_middlewares.append(
            KafkaPrometheusMiddleware(registry=registry, app_name=f"trayecto-{client_id}")
        )
    return KafkaBroker(
        settings.kafka_bootstrap.split(","),
        client_id=f"trayecto-{client_id}",
        acks="all",
        enable_idempotence=True,
        middlewares=all_middlewares,
        # FastStream's own logger prints to stdout; the services' logging (stderr, one
        # format) gets its records instead. One line per consumed batch at INFO would
        # drown the services' own logs: those go at DEBUG.
        logger=logging.getLogger("faststream.trayecto"),
        log_level=logging.DEBUG,
    )


async def publish(broker: KafkaBroker, topic: str, message: WireMessage) -> None:
    """Publish one contract message keyed by prospect, and wait for the broker's ack."""
    record = encode(message)
    await broker.publish(record.value, topic, key=record.key, headers=record.headers)
