"""The consume loop of the services' commit protocols: a batch, its handler, then offsets."""

from __future__ import annotations

import asyncio
import dataclasses
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
_REPLACEMENT = "\ufffd"


async def _undecoded(message: StreamMessage[Any]) -> Any:
    return message.body


def _readable(record: ConsumerRecord[bytes, bytes]) -> ConsumerRecord[bytes, bytes]:
    """The record with headers FastStream can read and PostgreSQL can store.

    Kafka allows any bytes, or null, as a header value; FastStream's parser decodes them
    strictly, so one foreign record would fail its batch on every redelivery and stall
    the partition. Consumers read headers as text (undecodable bytes replaced) and a
    dead letter keeps them in a ``jsonb`` outbox column, which cannot hold NUL.
    """
    if all(
        type(value) is bytes and value.isascii() and b"\x00" not in value and "\x00" not in key
        for key, value in record.headers
    ):
        return record
    headers = tuple(
        (key.replace("\x00", _REPLACEMENT), _text(value).encode()) for key, value in record.headers
    )
    return dataclasses.replace(record, headers=headers)


def _text(value: bytes | None) -> str:
    return (
        "" if value is None else bytes(value).decode(errors="replace").replace("\x00", _REPLACEMENT)
    )


async def _tolerant(
    records: tuple[ConsumerRecord[bytes, bytes], ...],
    parse: Callable[[tuple[ConsumerRecord[bytes, bytes], ...]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    return await parse(tuple(_readable(r) for r in records))


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
        parser=_tolerant,
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
