"""Counting consumed messages exactly once: tally and offsets in one transaction.

Kafka delivers at least once; the offsets counted so far live in PostgreSQL next to the
series and move in the same transaction as the batch's increments. A batch delivered
again (a crash before the Kafka commit, a rebalance) finds its offsets already counted
and adds nothing, so ``increase()`` over any window never counts a message twice.

Producers publish at least once too: a copy of a message under a new offset (ingest or
an outbox relay killed between Kafka's ack and recording it publishes again) carries
the same event id. Event ids are claimed in ``processed_events`` in the same
transaction, so a copy is dropped (``outcome="duplicate"``) instead of counted again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

import asyncpg
from pydantic import ValidationError

from shared.db.pool import Connection
from shared.kafka.codec import UnknownMessageType, decode
from shared.kafka.consumer import Batch

from . import store
from .counting import Known, Tally, count

log = logging.getLogger(__name__)
GROUP = "trayecto-metrics"
DEDUPE_RETENTION = timedelta(days=14)
"""Longer than Kafka keeps records (7 days by default): no copy can be older."""


class KnownJourneys:
    """Journey and step ids of the published journeys, reloaded when new ones show up."""

    def __init__(self) -> None:
        self.known = Known()
        self._loaded_at = 0.0

    async def load(self, conn: Connection) -> None:
        rows = await conn.fetch(
            """
            SELECT journey, array_agg(DISTINCT step ->> 'id') AS steps
            FROM journey_versions, jsonb_array_elements(definition -> 'steps') AS step
            GROUP BY journey
            """
        )
        self.known = Known({r["journey"]: frozenset(r["steps"]) for r in rows})
        self._loaded_at = time.monotonic()

    async def cover(self, conn: Connection, journeys: set[str]) -> None:
        """Reload (at most every 5 s) when a message names a journey not loaded yet."""
        if journeys - set(self.known.steps) and time.monotonic() - self._loaded_at > 5.0:
            await self.load(conn)


class Counter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        journeys: KnownJourneys,
        *,
        consumer: str = GROUP,
        after_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._pool = pool
        self._journeys = journeys
        self._consumer = consumer
        # Fault-injection point for tests: called with the batch number right after a
        # batch's transaction committed, before Kafka's offset commit.
        self._after_commit = after_commit
        self._batches = 0

    async def handle(self, records: Batch) -> None:
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await self._count(conn, records)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                # Nothing was applied (one transaction): count the same batch again.
                log.exception("counting a batch failed; retrying in 1 s")
                await asyncio.sleep(1)
        self._batches += 1
        if self._after_commit is not None:
            self._after_commit(self._batches)

    async def _count(self, conn: Connection, records: Batch) -> None:
        start = await store.counted_up_to(
            conn, self._consumer, ((r.topic, r.partition) for r in records)
        )
        decoded = []
        undecodable: list[str] = []
        next_offsets: dict[store.Position, int] = {}
        tally = Tally()
        for r in records:
            position = (r.topic, r.partition)
            if r.offset < start[position]:
                continue  # counted before: a redelivery
            next_offsets[position] = max(next_offsets.get(position, 0), r.offset + 1)
            headers = {k: v.decode(errors="replace") for k, v in r.headers}
            try:
                decoded.append((r.topic, decode(r.value or b"", headers)))
            except (UnknownMessageType, ValidationError, ValueError) as exc:
                # The service that consumes the topic for real dead-letters it; a reader
                # only counts it, so a poison message is not dead-lettered twice.
                undecodable.append(f"{r.topic}@{r.partition}:{r.offset}: {exc}")
                tally.inc("trayecto_metrics_events_total", topic=r.topic, outcome="undecodable")
        if undecodable:
            # One line per batch: a topic full of foreign records must not flood the log.
            log.warning("%d undecodable records not counted; first: %s",
                        len(undecodable), undecodable[0][:300])  # fmt: skip
        journeys = {
            j
            for _, m in decoded
            if isinstance(j := getattr(m, "properties", {}).get("journey"), str)
        }
        await self._journeys.cover(conn, journeys)
        fresh = await _claim(conn, self._consumer, [m.event_id for _, m in decoded])
        for topic, message in decoded:
            if message.event_id not in fresh:
                tally.inc("trayecto_metrics_events_total", topic=topic, outcome="duplicate")
                continue
            fresh.discard(message.event_id)  # a copy later in the same batch is one too
            try:
                count(tally, message, self._journeys.known)
            except TypeError as exc:
                log.warning("not counting %s", exc)
                tally.inc("trayecto_metrics_events_total", topic=topic, outcome="unexpected")
                continue
            tally.inc("trayecto_metrics_events_total", topic=topic, outcome="counted")
        if next_offsets:
            await store.add(conn, self._consumer, tally, next_offsets)


async def _claim(conn: Connection, consumer: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """The event ids not counted before, now recorded as counted."""
    if not ids:
        return set()
    rows = await conn.fetch(
        "INSERT INTO processed_events (consumer, event_id)"
        " SELECT $1, e FROM unnest($2::uuid[]) AS t(e)"
        " ON CONFLICT DO NOTHING RETURNING event_id",
        consumer,
        ids,
    )
    return {row["event_id"] for row in rows}


async def forget_old_ids(pool: asyncpg.Pool, consumer: str = GROUP) -> None:
    """Drop counted event ids older than ``DEDUPE_RETENTION``, every hour."""
    while True:
        try:
            await pool.execute(
                "DELETE FROM processed_events WHERE consumer = $1"
                " AND processed_at < now() - $2::interval",
                consumer,
                DEDUPE_RETENTION,
            )
        except (OSError, asyncpg.PostgresError):
            log.exception("forgetting old event ids failed; the next round retries")
        await asyncio.sleep(3600.0)
