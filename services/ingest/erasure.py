"""Erasing a person everywhere Trayecto keeps their data, in one transaction.

It takes the orchestrator's per-prospect locks, so no input of the person is being
applied meanwhile, and refuses (:class:`SendInProgress`) while a message to the person
is being sent. Then, for the id and every id linked to it (:mod:`.person`):

- deleted: the state (traits, facts, runs), identity links, timers, deliveries (the
  commands hold the address and traits), every outbox row keyed by the person,
  identify entries of the timeline, and messageIds containing an id or an address;
- pseudonymised, because the funnel and the journey map count them: journey history
  and the other timeline entries get a random prospect id per erased id, random run
  and event ids, and keep only the fields those aggregates read;
- suppressions are kept as the keyed hash of each of the person's addresses (delivery
  matches sends on it), with a random prospect id;
- ``erasures`` records the keyed hash of each id and the time.

What stays outside the database (Kafka records until their retention, logs) is listed
in docs/privacy.md.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime

from shared.db import Connection

from .person import MESSAGE_MATCH, SUBSTRING_MIN_CHARS, addresses, linked_ids

PSEUDONYM_PREFIX = "erased:"
IN_FLIGHT = ("sending", "handing_off")


class SendInProgress(RuntimeError):
    """A message to the person is being sent right now: erase once it is done."""


@dataclass(frozen=True, slots=True)
class Erasure:
    """What erasing a person did, table by table (row counts)."""

    ids: list[str]
    erased_at: datetime
    deleted: dict[str, int] = field(default_factory=dict)
    pseudonymised: dict[str, int] = field(default_factory=dict)


async def erase(conn: Connection, prospect_id: str) -> Erasure | None:
    """Erase the person in one transaction; None (nothing changed) when nothing is held."""
    async with conn.transaction():
        ids = await linked_ids(conn, prospect_id)
        early = await addresses(conn, ids)
        # The scan of ingest_messages comes before the locks: it may take a while.
        gone_messages = await _delete_messages(conn, [*ids, *early])
        # The orchestrator's per-prospect lock, in its order: no batch of the person's
        # inputs is being applied while this transaction runs.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(p, 0))"
            " FROM (SELECT unnest($1::text[]) AS p ORDER BY 1) AS ordered",
            ids,
        )
        known = sorted({*early, *await addresses(conn, ids)})
        sending = await conn.fetchval(
            "SELECT count(*) FROM (SELECT status FROM deliveries"
            " WHERE prospect_id = ANY($1::text[]) FOR UPDATE) d WHERE status = ANY($2::text[])",
            ids,
            list(IN_FLIGHT),
        )
        if sending:
            raise SendInProgress(
                f"{sending} message(s) to this person are being sent right now; "
                "retry in a few seconds"
            )
        deleted = {"ingest_messages": gone_messages, **await _delete(conn, ids)}
        pseudonymised = await _pseudonymise(conn, ids)
        pseudonymised["suppressions"] = await _hash_suppressions(conn, ids, known)
        deleted["suppressions"] = await _count(
            conn, "DELETE FROM suppressions WHERE prospect_id = ANY($1::text[])", ids
        )
        if not any(deleted.values()) and not any(pseudonymised.values()):
            return None  # nothing held: the transaction changed nothing
        erased_at = await conn.fetchval(
            "INSERT INTO erasures (id_hash) SELECT prospect_hash(i) FROM unnest($1::text[]) i"
            " RETURNING erased_at",
            ids,
        )
    return Erasure(ids, erased_at, deleted, pseudonymised)


async def last_erasure(conn: Connection, prospect_id: str) -> datetime | None:
    """When an id was last erased, from its hash; None if it never was."""
    value: datetime | None = await conn.fetchval(
        "SELECT max(erased_at) FROM erasures WHERE id_hash = prospect_hash($1)", prospect_id
    )
    return value


async def _count(conn: Connection, sql: str, *args: object) -> int:
    status: str = await conn.execute(sql, *args)
    return int(status.rpartition(" ")[2])


async def _delete_messages(conn: Connection, needles: list[str]) -> int:
    return await _count(
        conn,
        f"DELETE FROM ingest_messages m WHERE {MESSAGE_MATCH}",
        needles,
        SUBSTRING_MIN_CHARS,
    )


async def _delete(conn: Connection, ids: list[str]) -> dict[str, int]:
    keys = [i.encode() for i in ids]
    return {
        "prospect_state": await _count(
            conn, "DELETE FROM prospect_state WHERE prospect_id = ANY($1::text[])", ids
        ),
        "identities": await _count(
            conn,
            "DELETE FROM identities"
            " WHERE anonymous_id = ANY($1::text[]) OR user_id = ANY($1::text[])",
            ids,
        ),
        "timers": await _count(conn, "DELETE FROM timers WHERE prospect_id = ANY($1::text[])", ids),
        "deliveries": await _count(
            conn, "DELETE FROM deliveries WHERE prospect_id = ANY($1::text[])", ids
        ),
        # Published rows too: they hold the whole message until pruned.
        "outbox": await _count(conn, "DELETE FROM outbox WHERE key = ANY($1::bytea[])", keys),
        "timeline_identify": await _count(
            conn,
            "DELETE FROM prospect_timeline"
            " WHERE prospect_id = ANY($1::text[]) AND kind NOT IN ('touchpoint', 'delivery')",
            ids,
        ),
    }


# The random ids: one pseudonym per erased id (so counts of distinct prospects stay),
# one run id per run (runs are counted by id; the old one is derived from the prospect
# id) and a new event id per row (the old ones are in Kafka records next to the id).
_HISTORY = """
WITH names AS (SELECT * FROM unnest($1::text[], $2::text[]) AS n(id, pseudonym)),
runs AS (
    SELECT run_id, gen_random_uuid() AS new_run_id
    FROM journey_history WHERE prospect_id = ANY($1::text[]) GROUP BY run_id
)
UPDATE journey_history h
SET run_id = r.new_run_id, event_id = gen_random_uuid(), cause_event_id = NULL,
    prospect_id = coalesce((SELECT pseudonym FROM names WHERE id = h.prospect_id), h.prospect_id)
FROM runs r
WHERE h.run_id = r.run_id
"""

# Only what the journey map reads: the step, journey, video percent and emotion.
_TIMELINE = """
UPDATE prospect_timeline t
SET prospect_id = n.pseudonym, event_id = gen_random_uuid(),
    detail = CASE t.kind
        WHEN 'touchpoint' THEN jsonb_strip_nulls(jsonb_build_object(
            'properties', jsonb_strip_nulls(jsonb_build_object(
                'journey', t.detail -> 'properties' -> 'journey',
                'step', t.detail -> 'properties' -> 'step',
                'percent', t.detail -> 'properties' -> 'percent')),
            'emotion', t.detail -> 'emotion'))
        ELSE jsonb_strip_nulls(jsonb_build_object(
            'journey', t.detail -> 'journey', 'step', t.detail -> 'step'))
    END
FROM unnest($1::text[], $2::text[]) AS n(id, pseudonym)
WHERE t.prospect_id = n.id
"""


async def _pseudonymise(conn: Connection, ids: list[str]) -> dict[str, int]:
    pseudonyms = [PSEUDONYM_PREFIX + secrets.token_hex(16) for _ in ids]
    return {
        "journey_history": await _count(conn, _HISTORY, ids, pseudonyms),
        "timeline": await _count(conn, _TIMELINE, ids, pseudonyms),
    }


async def _hash_suppressions(conn: Connection, ids: list[str], known: list[str]) -> int:
    """A copy of each suppression per address, by its hash; the originals go afterwards."""
    return await _count(
        conn,
        """
        INSERT INTO suppressions (prospect_id, channel, reason, created_at, address_hash)
        SELECT DISTINCT ON (s.channel, address_hash(a))
               $3 || gen_random_uuid(), s.channel, s.reason, s.created_at, address_hash(a)
        FROM suppressions s CROSS JOIN unnest($2::text[]) AS a
        WHERE s.prospect_id = ANY($1::text[])
        ORDER BY s.channel, address_hash(a), s.created_at
        """,
        ids,
        known,
        PSEUDONYM_PREFIX,
    )
