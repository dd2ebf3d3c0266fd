"""Accepting calls: dedupe by messageId, stitch identities, publish, all-or-nothing.

Commit point: the messageId rows and identity links are written in one transaction
that stays open until Kafka has acknowledged every event of the request, and is
committed only then. A failed publish rolls the rows back, so the client's retry is
accepted again; a crash between Kafka's ack and the commit makes the retry publish
again, with the same deterministic event ids, which consumers drop as duplicates.

Group commit (:class:`shared.batching.Batched`): requests that arrive while earlier
ones are being committed wait and then share one transaction and one Kafka send (up to
:data:`FLUSHES` groups are under way at a time, so an idle ingest adds no wait). Each
request still gets its own answer; a group that fails fails every request in it, and
none of them was accepted.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from shared.batching import Batched
from shared.contract import WireMessage
from shared.db import Connection
from shared.kafka.producer import Producer
from shared.settings import Settings
from shared.topics import TOUCHPOINTS

from . import normalise
from .segment import Alias, Call, Identify
from .sources import Source

FLUSHES = 2
"""Groups committed at the same time, each on its own pooled connection."""
GROUP_EVENTS = 1000
"""A group takes waiting requests until it holds this many events (at least one request)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    published: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class _Request:
    source: Source
    calls: Sequence[Call]
    message_ids: list[str]
    received: normalise.Received
    keep_until: datetime | None = None


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
        self._groups = Batched(
            self._commit,
            in_flight=FLUSHES,
            max_weight=GROUP_EVENTS,
            weight=lambda request: len(request.calls),
        )

    async def accept(
        self,
        source: Source,
        calls: Sequence[Call],
        received_at: datetime | None = None,
        *,
        keep_until: datetime | None = None,
    ) -> Accepted:
        """Publish the calls not seen yet (by messageId) once Kafka acknowledged them.

        ``keep_until``: remember these messageIds at least until then, beyond the dedupe
        window (a tracking link's event that counts once, for as long as the link works).
        """
        received = normalise.Received(
            source=source.name,
            source_id=source.id,
            at=received_at or datetime.now(UTC),
            max_future=self._max_future,
        )
        message_ids = [call.message_id or str(uuid.uuid4()) for call in calls]
        # A request cancelled while it waits (the client went away) may still be committed
        # with its group; one cancelled while it commits rolls back. Either way a retry
        # with the same messageIds is safe.
        return await self._groups.submit(_Request(source, calls, message_ids, received, keep_until))

    async def _commit(self, group: Sequence[_Request]) -> list[Accepted]:
        """One transaction and one Kafka send for the group; each request's counts."""
        async with self._pool.acquire() as conn, conn.transaction():
            fresh = await self._claim(conn, group)
            if any(request.keep_until for request in group):
                await self._keep(conn, group)
            todo: list[list[tuple[Call, str]]] = []
            for request in group:
                mine: list[tuple[Call, str]] = []
                for call, mid in zip(request.calls, request.message_ids, strict=True):
                    key = (request.source.id, mid)
                    if key in fresh:  # the first call with a messageId takes it
                        fresh.discard(key)
                        mine.append((call, mid))
                todo.append(mine)
            links = await self._stitch(conn, [call for mine in todo for call, _ in mine])
            events = [
                self._event(call, mid, request.received, links)
                for request, mine in zip(group, todo, strict=True)
                for call, mid in mine
            ]
            await self._producer.send(self._topic, events)
        self._links.update(links)
        return [
            Accepted(published=len(mine), duplicates=len(request.calls) - len(mine))
            for request, mine in zip(group, todo, strict=True)
        ]

    async def _claim(self, conn: Connection, group: Sequence[_Request]) -> set[tuple[int, str]]:
        """Insert the messageIds not seen yet; returns those (a concurrent retry waits here).

        In key order, so two groups claiming some of the same ids lock them in the same
        order and never deadlock. Each request's source and receive time are sent once,
        with where its messageIds lie in the array of all of them (a timestamp and a
        source id encoded per messageId were half the cost of the claim).
        """
        counts = [len(request.message_ids) for request in group]
        lasts = list(itertools.accumulate(counts))  # 1-based, inclusive
        rows = await conn.fetch(
            """
            INSERT INTO ingest_messages (source_id, message_id, received_at)
            SELECT s, m, r
            FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::int[]) AS q(s, r, lo, hi),
                unnest(($5::text[])[lo:hi]) AS m
            ORDER BY s, m
            ON CONFLICT (source_id, message_id) DO NOTHING
            RETURNING source_id, message_id
            """,
            [request.source.id for request in group],
            [request.received.at for request in group],
            [last - count + 1 for last, count in zip(lasts, counts, strict=True)],
            lasts,
            [mid for request in group for mid in request.message_ids],
        )
        return {(row["source_id"], row["message_id"]) for row in rows}

    async def _keep(self, conn: Connection, group: Sequence[_Request]) -> None:
        """Extend the kept messageIds' keep_until to the latest asked for, new or seen.

        A separate statement, so the claim of plain messageIds stays as it is. The rows
        are locked in key order, as the claim does: two groups extending the same rows
        never deadlock.
        """
        kept = [
            (request.source.id, mid, request.keep_until)
            for request in group
            if request.keep_until
            for mid in request.message_ids
        ]
        await conn.execute(
            """
            WITH asked AS (
                SELECT s, m, max(k) AS k
                FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS q(s, m, k)
                GROUP BY s, m
            ), due AS (
                SELECT i.source_id, i.message_id, asked.k
                FROM ingest_messages i
                    JOIN asked ON i.source_id = asked.s AND i.message_id = asked.m
                WHERE i.keep_until IS NULL OR i.keep_until < asked.k
                ORDER BY i.source_id, i.message_id
                FOR UPDATE OF i
            )
            UPDATE ingest_messages i SET keep_until = due.k
            FROM due
            WHERE i.source_id = due.source_id AND i.message_id = due.message_id
            """,
            [s for s, _, _ in kept],
            [m for _, m, _ in kept],
            [k for _, _, k in kept],
        )

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
        """Drop messageIds older than the dedupe window and past any keep_until; returns
        how many."""
        status = await self._pool.execute(
            # Two arms, each served by its partial index (see migration 0013).
            "DELETE FROM ingest_messages WHERE received_at < now() - $1::interval"
            " AND (keep_until IS NULL OR keep_until < now())",
            self._dedupe_window,
        )
        return int(status.rpartition(" ")[2])
