"""Accepting calls: dedupe by messageId, stitch identities, publish, all-or-nothing.

Commit point: the messageId rows and identity links are written in one transaction
that stays open until Kafka has acknowledged every event of the request, and is
committed only then. A failed publish rolls the rows back, so the client's retry is
accepted again; a crash between Kafka's ack and the commit makes the retry publish
again, with the same deterministic event ids, which consumers drop as duplicates.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from shared.contract import WireMessage
from shared.db import Connection
from shared.kafka.producer import Producer
from shared.settings import Settings
from shared.topics import TOUCHPOINTS

from . import normalise
from .segment import Alias, Call, Identify
from .sources import Source


@dataclass(frozen=True, slots=True)
class Accepted:
    published: int
    duplicates: int


class Ingestor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: Producer,
        settings: Settings,
        *,
        topic: str = TOUCHPOINTS,
    ) -> None:
        self._pool = pool
        self._topic = topic
        self._producer = producer
        self._max_future = timedelta(seconds=settings.ingest_max_future_s)
        self._dedupe_window = timedelta(days=settings.ingest_dedupe_days)
        # anonymous id → user id; a link never changes once made (first link wins).
        self._links: dict[str, str] = {}

    async def accept(
        self, source: Source, calls: Sequence[Call], received_at: datetime | None = None
    ) -> Accepted:
        received = normalise.Received(
            source=source.name,
            source_id=source.id,
            at=received_at or datetime.now(UTC),
            max_future=self._max_future,
        )
        message_ids = [call.message_id or str(uuid.uuid4()) for call in calls]
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await self._claim(conn, source.id, message_ids, received)
            todo = [
                (call, mid) for call, mid in zip(calls, message_ids, strict=True) if mid in fresh
            ]
            links = await self._stitch(conn, [call for call, _ in todo])
            events = [self._event(call, mid, received, links) for call, mid in todo]
            await self._producer.send(self._topic, events)
        self._links.update(links)
        return Accepted(published=len(events), duplicates=len(calls) - len(events))

    async def _claim(
        self,
        conn: Connection,
        source_id: int,
        message_ids: list[str],
        received: normalise.Received,
    ) -> set[str]:
        """Insert the messageIds not seen yet; returns those (a concurrent retry waits here)."""
        rows = await conn.fetch(
            """
            INSERT INTO ingest_messages (source_id, message_id, received_at)
            SELECT $1, m, $3 FROM unnest($2::text[]) AS t(m)
            ON CONFLICT (source_id, message_id) DO NOTHING
            RETURNING message_id
            """,
            source_id,
            message_ids,
            received.at,
        )
        return {row["message_id"] for row in rows}

    async def _stitch(self, conn: Connection, calls: Sequence[Call]) -> dict[str, str]:
        """Record the links these calls make, then resolve every anonymous id they use."""
        new_links: dict[str, str] = {}
        for call in calls:
            if isinstance(call, Alias):
                new_links.setdefault(call.previous_id, call.user_id)
            elif isinstance(call, Identify) and call.user_id and call.anonymous_id:
                new_links.setdefault(call.anonymous_id, call.user_id)
        if new_links:
            await conn.execute(
                "INSERT INTO identities (anonymous_id, user_id)"
                " SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
                list(new_links),
                list(new_links.values()),
            )
        wanted = {
            call.anonymous_id
            for call in calls
            if call.user_id is None and call.anonymous_id is not None
        } | set(new_links)
        links = {anon: self._links[anon] for anon in wanted if anon in self._links}
        unknown = [anon for anon in wanted if anon not in links]
        if unknown:
            rows = await conn.fetch(
                "SELECT anonymous_id, user_id FROM identities WHERE anonymous_id = ANY($1::text[])",
                unknown,
            )
            links.update({row["anonymous_id"]: row["user_id"] for row in rows})
        return links

    @staticmethod
    def _event(
        call: Call, message_id: str, received: normalise.Received, links: dict[str, str]
    ) -> WireMessage:
        if isinstance(call, Identify):
            return normalise.identify(call, message_id, received, links)
        if isinstance(call, Alias):
            return normalise.alias(call, message_id, received)
        return normalise.touchpoint(call, message_id, received, links)

    def forget(self, ids: Sequence[str]) -> None:
        """Drop erased ids from this process's link cache (other processes: on restart)."""
        gone = set(ids)
        for anonymous, user in list(self._links.items()):
            if anonymous in gone or user in gone:
                del self._links[anonymous]

    async def forget_old_messages(self) -> int:
        """Drop messageIds older than the dedupe window; returns how many."""
        status = await self._pool.execute(
            "DELETE FROM ingest_messages WHERE received_at < now() - $1::interval",
            self._dedupe_window,
        )
        return int(status.rpartition(" ")[2])
