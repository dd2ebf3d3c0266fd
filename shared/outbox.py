"""The transactional outbox: messages written with the state they follow from, then relayed.

A service inserts outbox rows in the same PostgreSQL transaction as its state change,
commits, and then publishes them (``relay``). A crash after the commit leaves rows
unpublished; the periodic relay publishes them later. Rows are claimed with
``FOR UPDATE SKIP LOCKED`` so that concurrent relays never publish the same row twice
while both are alive; a relay that dies after publishing and before marking makes the
next relay publish a row again, which consumers drop by its event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from datetime import timedelta

import asyncpg

from .contract import WireMessage
from .db import Connection
from .kafka.codec import Record, encode
from .kafka.producer import KafkaUnavailable, Producer

log = logging.getLogger(__name__)


async def add(conn: Connection, messages: Sequence[tuple[str, WireMessage]]) -> list[int]:
    """Insert (topic, message) rows; returns their ids (in order)."""
    return await add_records(conn, [(topic, encode(message)) for topic, message in messages])


async def add_records(conn: Connection, records: Sequence[tuple[str, Record]]) -> list[int]:
    """Insert (topic, record) rows as they are (dead letters keep their original bytes)."""
    if not records:
        return []
    rows = await conn.fetch(
        """
        INSERT INTO outbox (topic, key, value, headers)
        SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::json[])
        RETURNING id
        """,
        [topic for topic, _ in records],
        [r.key for _, r in records],
        [r.value for _, r in records],
        [json.dumps(r.headers) for _, r in records],
    )
    return [int(row["id"]) for row in rows]


async def relay(pool: asyncpg.Pool, producer: Producer, limit: int = 1000) -> int:
    """Publish up to ``limit`` unpublished rows (oldest first); returns how many."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """
            SELECT id, topic, key, value, headers FROM outbox
            WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
            """,
            limit,
        )
        if not rows:
            return 0
        records = [
            (row["topic"], Record(bytes(row["key"]), bytes(row["value"]), _headers(row["headers"])))
            for row in rows
        ]
        await producer.send_records(records)
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
            [row["id"] for row in rows],
        )
    return len(rows)


def _headers(value: object) -> dict[str, str]:
    data = json.loads(value) if isinstance(value, str) else value
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


async def relay_forever(
    pool: asyncpg.Pool,
    producer: Producer,
    wake: asyncio.Event,
    interval_s: float = 1.0,
    stop: asyncio.Event | None = None,
    pause_s: float = 0.0,
) -> None:
    """Relay whenever woken (after a commit) and at least every ``interval_s``.

    Once ``stop`` is set (and ``wake`` with it), one last round relays every row
    committed before, then the loop returns: cancelled during a publish instead, the
    relay would leave published rows unmarked, and another relay would publish them again.
    While rows keep coming, a round follows the previous one after ``pause_s``: rows
    committed meanwhile go out together (fewer, larger rounds), at most that much later.
    """
    while True:
        stopping = stop is not None and stop.is_set()
        wake.clear()  # before relaying: a commit during the relay wakes the next round
        try:
            while await relay(pool, producer) > 0:
                if pause_s > 0:
                    await asyncio.sleep(pause_s)
        except KafkaUnavailable:
            log.warning("outbox relay: Kafka unavailable; rows stay in the outbox")
        except (OSError, asyncpg.PostgresError):
            log.exception("outbox relay: database error; retrying")
        if stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), interval_s)


async def backlog(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))


async def prune(conn: Connection, older_than: timedelta) -> int:
    """Forget published rows older than ``older_than``; returns how many."""
    status = await conn.execute(
        "DELETE FROM outbox WHERE published_at < now() - $1::interval", older_than
    )
    return int(status.rpartition(" ")[2])
