"""The orchestrator's consume loop: batch → transaction → relay → commit offsets.

Offsets are committed only after the batch's transaction committed and its outbox rows
were handed to the relay, so a crash at any point redelivers events that the
``processed_events`` dedupe turns into no-ops. The relay of a batch may finish after its
offsets are committed (it overlaps the next batch): safe, because its rows were committed
to the outbox with the state, and a crash before they are marked published leaves them
to the relay loop (``outbox.relay_forever``), which publishes unpublished rows in order.
Several instances share the work through the consumer group; a rebalance only moves
partitions, the same protocol holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError

from shared import outbox
from shared.contract import DeliveryOutcome, IdentifyEvent, TimerFired, TouchpointEvent
from shared.kafka.codec import Record, UnknownMessageType, decode
from shared.kafka.consumer import consume_batches
from shared.kafka.producer import KafkaUnavailable, Producer
from shared.settings import Settings

from .catalog import JourneyCatalog
from .engine import Input
from .processor import BatchResult, DeadLetter, Processor
from .topics import OrchestratorTopics

log = logging.getLogger(__name__)
GROUP = "trayecto-orchestrator"
_REFUSED = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,
)
"""Errors about the data written, which the same data would meet again on every retry."""


@dataclass
class RuntimeMetrics:
    registry: CollectorRegistry
    events: Counter = field(init=False)
    batches: Histogram = field(init=False)

    def __post_init__(self) -> None:
        self.events = Counter(
            "trayecto_orchestrator_events_total",
            "Inputs handled by the orchestrator, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.batches = Histogram(
            "trayecto_orchestrator_batch_seconds",
            "Time to process one consumed batch (transaction and relay)",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )


class Orchestrator:
    """Consumes inputs until stopped; one instance of the consumer group."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        producer: Producer,
        catalog: JourneyCatalog,
        topics: OrchestratorTopics,
        metrics: RuntimeMetrics,
        relay_wake: asyncio.Event,
        *,
        group: str = GROUP,
        after_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._producer = producer
        self._processor = Processor(catalog, topics)
        self._topics = topics
        self._metrics = metrics
        self._relay_wake = relay_wake
        self._group = group
        # Fault-injection point for tests: called with the batch number right after a
        # batch's transaction committed, before its outbox relay and offset commit.
        self._after_commit = after_commit
        self._batches = 0
        self._relaying: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            await consume_batches(
                self._settings,
                self._topics.inputs,
                self._handle,
                group=self._group,
                client_id="orchestrator",
                registry=self._metrics.registry,
            )
        finally:
            if self._relaying is not None:
                self._relaying.cancel()
                await asyncio.gather(self._relaying, return_exceptions=True)

    async def _handle(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        started = time.perf_counter()
        inputs: list[tuple[Input, Record, str]] = []
        dead: list[DeadLetter] = []
        for r in records:
            headers = {k: v.decode(errors="replace") for k, v in r.headers}
            record = Record(r.key or b"", r.value or b"", headers)
            try:
                message = decode(record.value, headers)
            except (UnknownMessageType, ValidationError, ValueError) as exc:
                dead.append(DeadLetter(record, r.topic, f"cannot decode: {exc}"[:1000]))
                continue
            if not isinstance(
                message, TouchpointEvent | IdentifyEvent | DeliveryOutcome | TimerFired
            ):
                dead.append(DeadLetter(record, r.topic, f"unexpected {type(message).__name__}"))
                continue
            inputs.append((message, record, r.topic))
        result = await self._apply(inputs, dead)
        self._batches += 1
        if self._after_commit is not None:
            self._after_commit(self._batches)
        self._metrics.events.labels("processed").inc(result.processed)
        self._metrics.events.labels("duplicate").inc(result.duplicates)
        self._metrics.events.labels("dead_letter").inc(result.dead_letters)
        # The batch's messages are published while the next batch is processed; a batch
        # waits for the previous one's relay, so the outbox never runs ahead by more.
        if self._relaying is not None:
            await self._relaying
        self._relaying = asyncio.create_task(self._relay(result.outbox))
        self._metrics.batches.observe(time.perf_counter() - started)

    async def _apply(
        self,
        inputs: list[tuple[Input, Record, str]],
        dead: list[DeadLetter],
        *,
        split: bool = True,
    ) -> BatchResult:
        """The batch's transaction, retried until it commits.

        Nothing is applied by a failed attempt (one transaction), so retrying is safe. A
        database that is down or busy is waited for. One that refuses the batch's data
        twice (a value it cannot store, a constraint a journey breaks) is stuck on some
        input: the batch is then applied one input at a time, and an input refused on its
        own goes to the dead-letter topic with the database's reason, so the partition
        keeps flowing.
        """
        refused = 0
        settled: list[Input] = []
        while True:
            try:
                async with self._pool.acquire() as conn:
                    now = datetime.now(UTC)
                    return await self._processor.process(conn, inputs, dead, now, settled=settled)
            except _REFUSED as exc:
                refused += 1
                log.warning("the database refused a batch (%d time(s)): %s", refused, exc)
                if refused >= 2 and inputs:
                    if split and len(inputs) > 1:
                        return await self._one_by_one(inputs, dead)
                    message, record, topic = inputs[0]
                    reason = f"refused by the database: {type(exc).__name__}: {exc}"[:1000]
                    dead = [*dead, DeadLetter(record, topic, reason)]
                    inputs, settled, refused = [], [message], 0
                    continue
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.exception("batch transaction failed; retrying in 1 s")
            await asyncio.sleep(1)

    async def _one_by_one(
        self, inputs: list[tuple[Input, Record, str]], dead: list[DeadLetter]
    ) -> BatchResult:
        """Each input in its own transaction, in order (the batch's undecodable ones first)."""
        total = BatchResult()
        for n, item in enumerate(inputs):
            part = await self._apply([item], dead if n == 0 else [], split=False)
            total.processed += part.processed
            total.duplicates += part.duplicates
            total.dead_letters += part.dead_letters
            total.commands += part.commands
            total.transitions += part.transitions
            total.outbox += part.outbox
        return total

    async def _relay(self, rows: list[tuple[int, str, Record]]) -> None:
        try:
            if rows and await self._publish(rows):
                return
            while await outbox.relay(self._pool, self._producer) > 0:
                pass
        except KafkaUnavailable:
            # Committed rows stay in the outbox; the background relay publishes them.
            log.warning("Kafka unavailable while relaying; the outbox keeps the rows")
            self._relay_wake.set()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.exception("relaying the outbox failed; the background relay retries")
            self._relay_wake.set()

    async def _publish(self, rows: list[tuple[int, str, Record]]) -> bool:
        """Publish the batch's own outbox rows from memory; False if older rows wait.

        The relay would read back what the batch just wrote. Marking the rows published
        locks them until the commit, after Kafka acknowledged them: another relay skips
        them meanwhile, and a failure rolls the mark back. Unpublished rows older than
        the batch's (a failed relay) go first, through the relay, to keep their order.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetch(_CLAIM, [i for i, _, _ in rows], rows[0][0])
            if not claimed:
                return False
            mine = {row["id"] for row in claimed}
            await self._producer.send_records([(t, r) for i, t, r in rows if i in mine])
        return True


_CLAIM = """
    UPDATE outbox SET published_at = now()
    WHERE id = ANY($1::bigint[]) AND published_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL AND id < $2)
    RETURNING id
"""
