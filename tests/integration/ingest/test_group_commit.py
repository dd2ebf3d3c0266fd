"""Group commit: concurrent requests share a transaction and a Kafka send, each answered alone."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.ingest import normalise
from services.ingest.pipeline import Accepted, Ingestor, _Request
from services.ingest.segment import Call, Track
from services.ingest.sources import Source, SourceAuth, add_source
from shared.contract import TouchpointEvent
from shared.db import create_pool, migrate
from shared.kafka import ensure_topics
from shared.kafka.producer import KafkaUnavailable, Producer
from shared.settings import Settings

from ..names import topic_name
from .conftest import read_topic

pytestmark = pytest.mark.integration


class Recording(Ingestor):
    """An ingestor that remembers how many requests each group it committed held."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups: list[int] = []

    async def _commit(self, group: Sequence[_Request]) -> list[Accepted]:
        self.groups.append(len(group))
        return await super()._commit(group)


def _track(message_id: str, user: str = "p-1") -> Track:
    return Track.model_validate({"userId": user, "event": "Page Viewed", "messageId": message_id})


@pytest.fixture
async def ready(
    settings: Settings, fresh_database: str
) -> AsyncIterator[tuple[asyncpg.Pool, Source, str]]:
    await migrate(fresh_database)
    topic = topic_name("touchpoints")
    await ensure_topics(settings, [topic], partitions=3)
    pool = await create_pool(settings, dsn=fresh_database)
    async with pool.acquire() as conn:
        created = await add_source(conn, "group-commit")
    source = await SourceAuth(pool).by_write_key(created.write_key)
    assert source is not None
    try:
        yield pool, source, topic
    finally:
        await pool.close()


async def test_concurrent_requests_are_grouped_and_each_messageid_published_once(
    settings: Settings, ready: tuple[asyncpg.Pool, Source, str]
) -> None:
    pool, source, topic = ready
    producer = Producer(settings, client_id="test-group", timeout_s=10)
    await producer.start()
    ingestor = Recording(pool, producer, settings, topic=topic)
    try:
        # 30 messageIds, each sent by three concurrent requests; and one batch that
        # repeats a messageId of its own.
        requests: list[list[Call]] = [
            [_track(f"m-{i}", f"p-{i % 7}")] for i in range(30) for _ in range(3)
        ]
        requests.append([_track("in-batch"), _track("in-batch"), _track("b-2")])
        answers = await asyncio.gather(*(ingestor.accept(source, calls) for calls in requests))
    finally:
        await producer.stop()

    assert max(ingestor.groups) > 1, "concurrent requests were not grouped"
    assert sum(ingestor.groups) == len(requests)
    assert answers[-1] == Accepted(published=2, duplicates=1)
    for i in range(30):
        mine = [a for c, a in zip(requests, answers, strict=True) if c[0].message_id == f"m-{i}"]
        # One of the three requests publishes it, the other two are told it is a duplicate.
        assert sorted(mine, key=lambda a: a.published) == [
            Accepted(published=0, duplicates=1),
            Accepted(published=0, duplicates=1),
            Accepted(published=1, duplicates=0),
        ]

    events = await read_topic(settings, topic, expected=32, timeout_s=20)
    assert all(isinstance(e, TouchpointEvent) for e in events)
    assert Counter(e.message_id for e in events if isinstance(e, TouchpointEvent)) == Counter(
        {f"m-{i}": 1 for i in range(30)} | {"in-batch": 1, "b-2": 1}
    )
    stored = await pool.fetchval("SELECT count(*) FROM ingest_messages")
    assert stored == 32


async def test_a_failed_group_fails_each_request_and_keeps_nothing(
    settings: Settings, ready: tuple[asyncpg.Pool, Source, str]
) -> None:
    pool, source, topic = ready
    # A broker that is not there: every send fails within the deadline.
    nowhere = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:1"})
    down = Producer(nowhere, client_id="test-group-down", timeout_s=1)
    ingestor = Recording(pool, down, settings, topic=topic)
    outcomes = await asyncio.gather(
        *(ingestor.accept(source, [_track(f"d-{i}")]) for i in range(12)),
        return_exceptions=True,
    )
    await down.stop()
    assert all(isinstance(o, KafkaUnavailable) for o in outcomes), outcomes
    assert max(ingestor.groups) > 1, "concurrent requests were not grouped"
    assert sum(ingestor.groups) == 12
    assert await pool.fetchval("SELECT count(*) FROM ingest_messages") == 0

    # The clients' retries, once Kafka answers, are accepted as new.
    producer = Producer(settings, client_id="test-group-up", timeout_s=10)
    await producer.start()
    try:
        retried = Ingestor(pool, producer, settings, topic=topic)
        answers = await asyncio.gather(
            *(retried.accept(source, [_track(f"d-{i}")]) for i in range(12))
        )
    finally:
        await producer.stop()
    assert [a.published for a in answers] == [1] * 12
    events = await read_topic(settings, topic, expected=12, timeout_s=20)
    assert Counter(e.message_id for e in events if isinstance(e, TouchpointEvent)) == Counter(
        f"d-{i}" for i in range(12)
    )


ONE_ROW_PER_MESSAGE_ID = """
    INSERT INTO ingest_messages (source_id, message_id, received_at)
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS t(s, m, r)
    ORDER BY s, m
    ON CONFLICT (source_id, message_id) DO NOTHING
    RETURNING source_id, message_id
"""
"""The claim as a row of arrays per messageId: what the claim must still store and return."""


async def test_the_claim_stores_and_returns_what_a_row_per_messageid_did(
    settings: Settings, ready: tuple[asyncpg.Pool, Source, str]
) -> None:
    pool, source, _ = ready
    other_key = (await add_source(pool, "group-commit-2")).write_key
    other = await SourceAuth(pool).by_write_key(other_key)
    assert other is not None
    at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def request(by: Source, message_ids: list[str], later_s: int = 0) -> _Request:
        received = normalise.Received(by.name, by.id, at + timedelta(seconds=later_s), timedelta())
        return _Request(by, [_track(mid) for mid in message_ids], message_ids, received)

    # Repeats within a request, across requests and sources, an empty request, a
    # messageId stored before; the requests that share a messageId share a receive time.
    group = [
        request(source, ["b", "a", "b", "seen"]),
        request(other, ["a", "c"]),
        request(source, []),
        request(source, ["c", "a", "z"]),
        request(other, ["d", "e"], later_s=5),
        request(source, []),
    ]
    ingestor = Ingestor(pool, Producer(settings, client_id="test-claim", timeout_s=1), settings)
    results: list[tuple[set[tuple[int, str]], list[tuple[Any, ...]]]] = []
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO ingest_messages VALUES ($1, 'seen', $2)", source.id, at - timedelta(days=1)
        )
        for previous in (False, True):
            transaction = conn.transaction()
            await transaction.start()
            if previous:
                rows = await conn.fetch(
                    ONE_ROW_PER_MESSAGE_ID,
                    [r.source.id for r in group for _ in r.message_ids],
                    [mid for r in group for mid in r.message_ids],
                    [r.received.at for r in group for _ in r.message_ids],
                )
                fresh = {(row["source_id"], row["message_id"]) for row in rows}
            else:
                fresh = await ingestor._claim(conn, group)
            rows = await conn.fetch("SELECT * FROM ingest_messages ORDER BY 1, 2, 3")
            results.append((fresh, [tuple(row) for row in rows]))
            await transaction.rollback()

    assert results[0] == results[1]
    fresh, stored = results[0]
    assert fresh == {(source.id, m) for m in "abcz"} | {(other.id, m) for m in "acde"}
    assert len(stored) == 9
