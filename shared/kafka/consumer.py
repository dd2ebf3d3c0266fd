"""The consume loop of the services' commit protocols: a batch, its handler, then offsets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from ..settings import Settings

log = logging.getLogger(__name__)
Batch = list[ConsumerRecord[bytes, bytes]]


async def consume_batches(
    settings: Settings,
    topics: Sequence[str],
    handle: Callable[[Batch], Awaitable[None]],
    *,
    group: str,
    client_id: str,
    max_records: int = 500,
) -> None:
    """Consume until cancelled; offsets are committed only once ``handle`` has returned.

    At least once: a crash before the commit redelivers the batch, so ``handle`` must
    make a redelivered record a no-op (the services dedupe by event or command id).
    The broker may be down at start: the loop waits for it.
    """
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
    )
    while True:
        try:
            await consumer.start()
            break
        except KafkaError:
            log.warning("Kafka not reachable yet; retrying in 2 s")
            await asyncio.sleep(2)
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=max_records)
            records = [r for partition in batches.values() for r in partition]
            if records:
                await handle(records)
                await consumer.commit()
    finally:
        await consumer.stop()
