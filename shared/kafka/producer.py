"""An aiokafka producer for request/response paths: bounded waits, survives broker outages.

Ingest answers an HTTP request only once Kafka has acknowledged the events, and must
answer 503 (not hang, not crash) while the broker is away. This wraps aiokafka's
producer with a deadline per call and a lazy (re)start, so a service can start
before the broker and recover after it returns without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from ..contract import WireMessage
from ..settings import Settings
from .codec import Record, encode

log = logging.getLogger(__name__)
_PARTITIONER = DefaultPartitioner()
"""The Java client's keyed partitioning (murmur2), as aiokafka's send() uses it."""


PARTITIONS_KEPT = 100_000
"""Keys whose partition a producer remembers (a few MiB at most)."""


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge in time; the caller should answer 503 and let the client retry."""


class Producer:
    """``acks=all`` + idempotence; every call either is acknowledged or raises KafkaUnavailable."""

    def __init__(self, settings: Settings, *, client_id: str, timeout_s: float) -> None:
        self._bootstrap = settings.kafka_bootstrap.split(",")
        self._client_id = f"trayecto-{client_id}"
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._next_attempt = 0.0
        self._partitions: dict[tuple[bytes, tuple[int, ...]], int] = {}

    async def start(self) -> None:
        """Connect now if the broker answers; otherwise the first send tries again."""
        try:
            await self._ensure()
        except KafkaUnavailable:
            log.warning("Kafka at %s not reachable yet; will retry on demand", self._bootstrap)

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is not None:
                return self._producer
            if time.monotonic() < self._next_attempt:
                raise KafkaUnavailable("Kafka is unreachable (retrying shortly)")
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                max_batch_size=256 * 1024,
                request_timeout_ms=int(self._timeout_s * 1000),
            )
            try:
                await asyncio.wait_for(producer.start(), self._timeout_s)
            except (KafkaError, OSError, TimeoutError) as exc:
                # Do not hammer a down broker: one connection attempt per second.
                self._next_attempt = time.monotonic() + 1.0
                await producer.stop()
                raise KafkaUnavailable(f"Kafka is unreachable: {exc!r}") from exc
            self._producer = producer
            return producer

    async def send_records(self, records: Sequence[tuple[str, Record]]) -> None:
        """Send in order and wait until every record is acknowledged, within the deadline."""
        producer = await self._ensure()

        async def send_all() -> None:
            # One BatchBuilder per partition instead of a send() per record: aiokafka's
            # per-record path dominates the cost of a large request. Records of one
            # partition stay in order (batches of a partition are queued in order).
            partitions: dict[str, tuple[int, ...]] = {}
            # Records about one prospect share its key, a prospect's events keep coming,
            # and the partitioner's murmur2 is pure Python: a key's partition is kept
            # (per set of partitions) for the calls after, up to PARTITIONS_KEPT keys.
            chosen = self._partitions
            if len(chosen) > PARTITIONS_KEPT:
                chosen.clear()
            builders: dict[tuple[str, int], BatchBuilder] = {}
            futures: list[asyncio.Future[Any]] = []
            for topic, record in records:
                if topic not in partitions:
                    partitions[topic] = tuple(sorted(await producer.partitions_for(topic)))
                where = (record.key, partitions[topic])
                partition = chosen.get(where)
                if partition is None:
                    partition = chosen[where] = _PARTITIONER(record.key, where[1], where[1])
                builder = builders.get((topic, partition)) or producer.create_batch()
                headers = [(k, v.encode()) for k, v in record.headers.items()]
                if (
                    builder.append(
                        key=record.key, value=record.value, timestamp=None, headers=headers
                    )
                    is None
                ):
                    futures.append(await producer.send_batch(builder, topic, partition=partition))
                    builder = producer.create_batch()
                    builder.append(
                        key=record.key, value=record.value, timestamp=None, headers=headers
                    )
                builders[(topic, partition)] = builder
            for (topic, partition), builder in builders.items():
                futures.append(await producer.send_batch(builder, topic, partition=partition))
            await asyncio.gather(*futures)

        try:
            await asyncio.wait_for(send_all(), self._timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaUnavailable(f"Kafka did not acknowledge within {self._timeout_s}s") from exc

    async def send(self, topic: str, messages: Sequence[WireMessage]) -> None:
        await self.send_records([(topic, encode(message)) for message in messages])
