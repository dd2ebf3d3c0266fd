"""The consume loop of the services' commit protocols: a batch, its handler, then offsets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage
from prometheus_client import CollectorRegistry

from ..settings import Settings
from .broker import make_broker

log = logging.getLogger(__name__)
Batch = list[ConsumerRecord[bytes, bytes]]


async def _undecoded(message: StreamMessage[Any]) -> Any:
    return message.body


async def consume_batches(
    settings: Settings,
    topics: Sequence[str],
    handle: Callable[[Batch], Awaitable[None]],
    *,
    group: str,
    client_id: str,
    max_records: int = 500,
    registry: CollectorRegistry | None = None,
) -> None:
    """Consume until cancelled; offsets are committed only once ``handle`` has returned.

    At least once: a crash before the commit redelivers the batch, so ``handle`` must
    make a redelivered record a no-op (the services dedupe by event or command id). If
    ``handle`` raises, the batch's partitions are rewound to its first records and the
    batch comes again. The broker may be down at start: the loop waits for it.

    A FastStream batch subscriber does the fetching and committing, so its Prometheus
    middleware (on ``registry``) reports every service's message processing alike.
    """
    broker = make_broker(settings, client_id=client_id, registry=registry)

    @broker.subscriber(
        *topics,
        group_id=group,
        batch=True,
        max_records=max_records,
        # An empty poll waits this long before the next one: the idle latency floor.
        batch_timeout_ms=10,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # The handler decodes each record itself, so that one malformed record goes to
        # its dead-letter topic instead of failing the whole batch in FastStream's decoder.
        decoder=_undecoded,
    )
    async def on_batch(message: KafkaMessage) -> None:
        records = message.raw_message
        await handle(list(records) if isinstance(records, tuple) else [records])

    while True:
        try:
            await broker.start()
            break
        except (KafkaError, OSError):
            log.warning("Kafka not reachable yet; retrying in 2 s")
            await broker.stop()
            await asyncio.sleep(2)
    try:
        await asyncio.Event().wait()
    finally:
        await broker.stop()
