"""A person: the id asked about and every id identity stitching links to it, the
addresses known for them, and everything held about them (the export).

Identity stitching (``identify`` and ``alias``, table ``identities``) links anonymous
ids to a user: the person is the user of an anonymous id and all that user's other
anonymous ids, transitively.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic_core import to_jsonable_python

from shared.db import Connection

MAX_LINKED_IDS = 1000
SUBSTRING_MIN_CHARS = 6
"""Shorter ids and addresses only match a messageId equal to them, not one containing them."""


class TooManyLinkedIds(RuntimeError):
    """Identity stitching links the id to more ids than one person plausibly has."""


_LINKS = """
SELECT user_id AS id FROM identities WHERE anonymous_id = ANY($1::text[])
UNION
SELECT anonymous_id FROM identities WHERE user_id = ANY($1::text[])
"""

_ADDRESSES = """
SELECT state -> 'traits' ->> 'email' AS address FROM prospect_state
WHERE prospect_id = ANY($1::text[])
UNION
SELECT command -> 'recipient' ->> 'email' FROM deliveries WHERE prospect_id = ANY($1::text[])
"""

MESSAGE_MATCH = """
EXISTS (SELECT 1 FROM unnest($1::text[]) AS n(needle)
        WHERE m.message_id = n.needle
           OR (length(n.needle) >= $2 AND strpos(lower(m.message_id), lower(n.needle)) > 0))
"""
"""The messageIds (``ingest_messages m``) of needles $1: equal, or containing a long one."""

# Per table: the person's rows, for the export ($1: the ids; the outbox: as bytes).
_EXPORT: dict[str, str] = {
    "prospect_state": "SELECT * FROM prospect_state WHERE prospect_id = ANY($1::text[])",
    "identities": "SELECT * FROM identities"
    " WHERE anonymous_id = ANY($1::text[]) OR user_id = ANY($1::text[]) ORDER BY linked_at",
    "journey_history": "SELECT * FROM journey_history WHERE prospect_id = ANY($1::text[])"
    " ORDER BY occurred_at, id",
    "timeline": "SELECT * FROM prospect_timeline WHERE prospect_id = ANY($1::text[])"
    " ORDER BY occurred_at",
    "timers": "SELECT * FROM timers WHERE prospect_id = ANY($1::text[]) ORDER BY due_at",
    "deliveries": "SELECT * FROM deliveries WHERE prospect_id = ANY($1::text[])"
    " ORDER BY created_at",
    "suppressions": "SELECT prospect_id, channel, reason, created_at FROM suppressions"
    " WHERE prospect_id = ANY($1::text[])",
    "outbox": "SELECT id, topic, key, value, headers, created_at, published_at FROM outbox"
    " WHERE key = ANY($1::bytea[]) ORDER BY id",
}


async def linked_ids(conn: Connection, prospect_id: str) -> list[str]:
    """The id and every id identity stitching links to it, sorted."""
    found = {prospect_id}
    frontier = [prospect_id]
    while frontier:
        rows = await conn.fetch(_LINKS, frontier)
        frontier = sorted({row["id"] for row in rows} - found)
        found.update(frontier)
        if len(found) > MAX_LINKED_IDS:
            raise TooManyLinkedIds(
                f"{prospect_id!r} is linked to more than {MAX_LINKED_IDS} ids; "
                "check the identities table before erasing"
            )
    return sorted(found)


async def addresses(conn: Connection, ids: Sequence[str]) -> list[str]:
    """The email addresses known for the ids: traits, deliveries' recipients, and ids
    that are addresses themselves."""
    rows = await conn.fetch(_ADDRESSES, list(ids))
    found = {row["address"].strip() for row in rows if row["address"]}
    found.update(i for i in ids if "@" in i)
    return sorted(a for a in found if a)


async def export(conn: Connection, prospect_id: str) -> dict[str, Any] | None:
    """Everything held about the person, as JSON-ready data; None when nothing is."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        ids = await linked_ids(conn, prospect_id)
        keys = [i.encode() for i in ids]
        tables = {
            name: [dict(r) for r in await conn.fetch(sql, keys if name == "outbox" else ids)]
            for name, sql in _EXPORT.items()
        }
        needles = [*ids, *await addresses(conn, ids)]
        tables["ingest_messages"] = [
            dict(r)
            for r in await conn.fetch(
                "SELECT s.name AS source, m.message_id, m.received_at FROM ingest_messages m"
                f" JOIN sources s ON s.id = m.source_id WHERE {MESSAGE_MATCH}"
                " ORDER BY m.received_at",
                needles,
                SUBSTRING_MIN_CHARS,
            )
        ]
    if not any(tables.values()):
        return None
    for row in tables["outbox"]:
        row["key"] = bytes(row.pop("key")).decode("utf-8", "replace")
        row["message"] = _decoded(bytes(row.pop("value")))
    for rows in tables.values():
        for row in rows:
            for column, value in row.items():
                if isinstance(value, str) and column in _JSON_COLUMNS:
                    row[column] = json.loads(value)
    document = {"prospect_id": prospect_id, "linked_ids": ids, **tables}
    exported: dict[str, Any] = to_jsonable_python(document)
    return exported


_JSON_COLUMNS = frozenset({"state", "payload", "detail", "command", "headers"})


def _decoded(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:  # a dead letter keeps the bytes it arrived with
        return value.decode("utf-8", "replace")
