"""Durable timers: claim the due ones and turn them into timers.fired messages, once.

Claiming deletes the timer rows and writes TimerFired outbox rows in one transaction
(``FOR UPDATE SKIP LOCKED``: instances never claim the same timer). The message goes
through Kafka keyed by prospect, so it is processed on the prospect's ordered path
like any event. Its event id derives from the timer id: a re-publication is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid

import asyncpg

from shared.contract import TimerFired
from shared.db import Connection
from shared.kafka.codec import CONTENT_TYPE, EVENT_ID_HEADER, TYPE_HEADER, VERSION_HEADER

from .topics import OrchestratorTopics

log = logging.getLogger(__name__)
CLAIM_BATCH = 1000
FIRED_ID_PREFIX = "trayecto.timer.fired:"
"""The fired event's id is ``md5(prefix || timer_id)`` as a UUID: a re-publication of the
same outbox row carries the same id, and the consumers' dedupe drops it."""

# One statement: claim the due timers (deleted, so nobody fires them again), and write a
# TimerFired outbox row for each, built by PostgreSQL from the deleted row. The message's
# shape is the contract's (shared.contract.TimerFired; a test decodes these rows with the
# contract and compares them with the model built in Python).
_CLAIM = f"""
WITH due AS (
    DELETE FROM timers t USING (
        SELECT timer_id FROM timers WHERE due_at <= now()
        ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
    ) d
    WHERE t.timer_id = d.timer_id
    RETURNING t.*
), fired AS (
    SELECT due.*, md5('{FIRED_ID_PREFIX}' || timer_id::text)::uuid AS event_id FROM due
)
INSERT INTO outbox (topic, key, value, headers)
SELECT $2, convert_to(prospect_id, 'UTF8'),
       convert_to(json_build_object(
           'schema_version', $3::int, 'event_id', event_id, 'prospect_id', prospect_id,
           'kind', $4::text, 'timer_id', timer_id, 'run_id', run_id, 'journey', journey,
           'journey_version', journey_version, 'step', step,
           'due_at', due_at, 'fired_at', clock_timestamp(),
           'payload', payload
       )::text, 'UTF8'),
       $5::jsonb || jsonb_build_object('{EVENT_ID_HEADER}', event_id::text)
FROM fired
"""


def fired_event_id(timer_id: uuid.UUID) -> uuid.UUID:
    """The event id of the TimerFired message a timer becomes (as :data:`_CLAIM` derives it)."""
    return uuid.UUID(hashlib.md5(f"{FIRED_ID_PREFIX}{timer_id}".encode()).hexdigest())


async def claim_due(conn: Connection, topics: OrchestratorTopics, limit: int = CLAIM_BATCH) -> int:
    """Fire up to ``limit`` due timers (into the outbox); returns how many."""
    kind = TimerFired.model_fields["kind"].default
    version = TimerFired.SCHEMA_VERSION
    headers = {"content-type": CONTENT_TYPE, TYPE_HEADER: kind, VERSION_HEADER: str(version)}
    status = await conn.execute(_CLAIM, limit, topics.timers, version, kind, json.dumps(headers))
    return int(status.rpartition(" ")[2])


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
