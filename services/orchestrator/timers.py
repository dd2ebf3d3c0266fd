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

import asyncpg

from shared.contract import TimerFired
from shared.db import Connection
from shared.kafka.codec import CONTENT_TYPE, EVENT_ID_HEADER, TYPE_HEADER, VERSION_HEADER

from .topics import OrchestratorTopics

log = logging.getLogger(__name__)
CLAIM_BATCH = 1000
_VERSION_BITS = 0xF << 76

# One statement: claim the due timers (deleted, so nobody fires them again), and write a
# TimerFired outbox row for each, built by PostgreSQL from the deleted row. The message's
# shape is the contract's (shared.contract.TimerFired; a test decodes these rows with the
# contract and compares them with the model built in Python). The JSON documents are
# concatenated text: the prospect id through to_json (which escapes it), the journey and
# step ids as they are (slugs, checked by the table: migration 0011), the kind JSON-encoded
# by the caller, one firing time per claim; the event id is a text substitution. With
# json_build_object, a jsonb header object and an md5-derived id, a claim took 1.3 times
# as long; with to_json on every field and a clock reading per row, 1.1 times.
_CLAIM = f"""
WITH due AS (
    DELETE FROM timers t USING (
        SELECT timer_id FROM timers WHERE due_at <= now()
        ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
    ) d
    WHERE t.timer_id = d.timer_id
    RETURNING t.*
), fired AS (
    SELECT due.*, overlay(timer_id::text PLACING '8' FROM 15 FOR 1) AS event_id FROM due
), claim AS (
    SELECT to_json(clock_timestamp())::text AS fired_at
)
INSERT INTO outbox (topic, key, value, headers)
SELECT $2, convert_to(prospect_id, 'UTF8'),
       convert_to(concat(
           '{{"schema_version":', $3::int, ',"event_id":"', event_id,
           '","prospect_id":', to_json(prospect_id), ',"kind":', $4::text,
           ',"timer_id":"', timer_id, '","run_id":"', run_id,
           '","journey":"', journey, '","journey_version":', journey_version,
           ',"step":"', step, '","due_at":', to_json(due_at),
           ',"fired_at":', claim.fired_at, ',"payload":', payload, '}}'
       ), 'UTF8'),
       concat($5::text, ',"{EVENT_ID_HEADER}":"', event_id, '"}}')::json
FROM fired, claim
"""


def fired_event_id(timer_id: uuid.UUID) -> uuid.UUID:
    """The event id of the TimerFired message a timer becomes (as :data:`_CLAIM` derives it).

    The timer id with its version set to 8 (RFC 9562's custom version): the same for every
    re-publication of the timer's message, so the consumers' dedupe drops copies, and
    distinct from every other id Trayecto makes (versions 4 and 5). Cheap enough to derive
    in the claim statement: a hash there cost a fifth of the claim's time.
    """
    return uuid.UUID(int=timer_id.int & ~_VERSION_BITS | 8 << 76)


async def claim_due(conn: Connection, topics: OrchestratorTopics, limit: int = CLAIM_BATCH) -> int:
    """Fire up to ``limit`` due timers (into the outbox); returns how many."""
    kind = TimerFired.model_fields["kind"].default
    version = TimerFired.SCHEMA_VERSION
    headers = {"content-type": CONTENT_TYPE, TYPE_HEADER: kind, VERSION_HEADER: str(version)}
    # The constant headers as a JSON object without its closing brace: the event id's
    # header is appended per row.
    status = await conn.execute(
        _CLAIM, limit, topics.timers, version, json.dumps(kind), json.dumps(headers)[:-1]
    )
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
