"""Durable timers: claim the due ones and turn them into timers.fired messages, once.

Claiming deletes the timer rows and writes TimerFired outbox rows in one transaction
(``FOR UPDATE SKIP LOCKED``: instances never claim the same timer). The message goes
through Kafka keyed by prospect, so it is processed on the prospect's ordered path
like any event. Its event id derives from the timer id: a re-publication is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime

import asyncpg

from shared import outbox
from shared.contract import TimerFired
from shared.db import Connection

from .topics import OrchestratorTopics

log = logging.getLogger(__name__)
FIRED_NAMESPACE = uuid.UUID("0e7a4c1c-6f3f-4b5e-9d3a-74696d657273")
CLAIM_BATCH = 1000


async def claim_due(conn: Connection, topics: OrchestratorTopics, limit: int = CLAIM_BATCH) -> int:
    """Fire up to ``limit`` due timers (into the outbox); returns how many."""
    async with conn.transaction():
        rows = await conn.fetch(
            """
            DELETE FROM timers t USING (
                SELECT timer_id FROM timers WHERE due_at <= now()
                ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
            ) due
            WHERE t.timer_id = due.timer_id
            RETURNING t.*
            """,
            limit,
        )
        fired_at = datetime.now(UTC)
        await outbox.add(
            conn,
            [
                (
                    topics.timers,
                    TimerFired(
                        event_id=uuid.uuid5(FIRED_NAMESPACE, str(row["timer_id"])),
                        prospect_id=row["prospect_id"],
                        timer_id=row["timer_id"],
                        run_id=row["run_id"],
                        journey=row["journey"],
                        journey_version=row["journey_version"],
                        step=row["step"],
                        due_at=row["due_at"],
                        fired_at=fired_at,
                        payload=json.loads(row["payload"]),
                    ),
                )
                for row in rows
            ],
        )
    return len(rows)


async def fire_forever(
    pool: asyncpg.Pool,
    topics: OrchestratorTopics,
    relay_wake: asyncio.Event,
    poll_s: float = 0.2,
) -> None:
    """Claim due timers continuously; wake the relay whenever some fired."""
    while True:
        try:
            async with pool.acquire() as conn:
                fired = await claim_due(conn, topics)
            if fired:
                relay_wake.set()
                if fired == CLAIM_BATCH:
                    continue  # more are due: no pause
        except (OSError, asyncpg.PostgresError):
            log.exception("claiming due timers failed; retrying")
        await asyncio.sleep(poll_s)


async def pending(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM timers"))


async def overdue_seconds(conn: Connection) -> float:
    """How late the oldest unclaimed due timer is (0 when none is due)."""
    value = await conn.fetchval(
        "SELECT extract(epoch FROM now() - min(due_at)) FROM timers WHERE due_at <= now()"
    )
    with contextlib.suppress(TypeError):
        return max(0.0, float(value))
    return 0.0
