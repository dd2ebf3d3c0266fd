"""How long messageIds are remembered: the dedupe window, and links that count once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from services.ingest import normalise
from services.ingest.pipeline import Ingestor, _Request
from services.ingest.segment import Track
from services.ingest.sources import SourceAuth, add_source
from shared.contract import TouchpointEvent, TouchpointType
from shared.db import create_pool, migrate
from shared.kafka.producer import Producer
from shared.settings import Settings
from shared.tracking import LinkClaims

from .conftest import Ingest

pytestmark = pytest.mark.integration

JOIN = "https://meet.example.com/j/42"


async def _forget(ingest: Ingest) -> int:
    """The service's hourly cleanup, run now."""
    pool = await create_pool(ingest.settings)
    try:
        producer = Producer(ingest.settings, client_id="test-forget", timeout_s=1)
        return await Ingestor(pool, producer, ingest.settings).forget_old_messages()
    finally:
        await pool.close()


async def _sql(ingest: Ingest, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(ingest.dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def _claims(ingest: Ingest, **changes: object) -> LinkClaims:
    return ingest.link_claims(journey_version=1, content="webinar-q3", url=JOIN, **changes)


async def _follow_once_links(ingest: Ingest, claims: LinkClaims) -> list[httpx.Response]:
    """Every link that counts once: a video milestone, webinar registration and
    attendance, one-click unsubscribe, one-click rating."""
    client = ingest.client
    return [
        await client.post(ingest.link_path("v", claims), json={"percent": 75}),
        await client.get(ingest.link_path("w/register", claims)),
        await client.get(ingest.link_path("w/attend", claims)),
        await client.post(ingest.link_path("u", claims), data={"List-Unsubscribe": "One-Click"}),
        await client.get(ingest.link_path("f", claims), params={"emotion": "positive"}),
    ]


ONCE = Counter(
    {
        TouchpointType.VIDEO_PROGRESS: 1,
        TouchpointType.WEBINAR_REGISTERED: 1,
        TouchpointType.WEBINAR_ATTENDED: 1,
        TouchpointType.UNSUBSCRIBED: 1,
        TouchpointType.FEEDBACK: 1,
    }
)


async def _published(ingest: Ingest, expected: int) -> Counter[TouchpointType]:
    events = await ingest.messages(expected, timeout_s=5)
    assert all(isinstance(e, TouchpointEvent) for e in events)
    return Counter(e.type for e in events if isinstance(e, TouchpointEvent))


async def test_links_that_count_once_stay_duplicates_after_the_dedupe_window(
    ingest: Ingest,
) -> None:
    claims = _claims(ingest)
    first = await _follow_once_links(ingest, claims)
    assert [r.status_code for r in first] == [200, 302, 302, 200, 200], [r.text for r in first]
    assert await _published(ingest, 5) == ONCE
    link_expiry = datetime.fromtimestamp(claims.expires_at, UTC)
    kept = await _sql(ingest, "SELECT keep_until FROM ingest_messages")
    assert [r["keep_until"] for r in kept] == [link_expiry] * 5

    # Long past the dedupe window, the links still work: replays are duplicates.
    window = ingest.settings.ingest_dedupe_days
    await _sql(
        ingest,
        "UPDATE ingest_messages SET received_at = now() - make_interval(days => $1)",
        window + 1,
    )
    assert await _forget(ingest) == 0
    again = await _follow_once_links(ingest, claims)
    assert [r.status_code for r in again] == [200, 302, 302, 200, 200]
    assert again[0].json() == {"success": True, "published": 0, "duplicates": 1}
    assert await _published(ingest, 6) == ONCE  # nothing more

    # A later email's link to the same video: still a duplicate, and it keeps the claim
    # for as long as that link works.
    later = claims.model_copy(
        update={"command_id": str(uuid.uuid4()), "expires_at": claims.expires_at + 86_400}
    )
    video = ingest.link_path("v", later)
    replay = await ingest.client.post(video, json={"percent": 75})
    assert replay.json() == {"success": True, "published": 0, "duplicates": 1}
    video_id = "video:%"
    [extended] = await _sql(
        ingest, "SELECT keep_until FROM ingest_messages WHERE message_id LIKE $1", video_id
    )
    assert extended["keep_until"] == link_expiry + timedelta(days=1)

    # Once every link that used it has expired (and the window is past), it is forgotten.
    await _sql(
        ingest,
        "UPDATE ingest_messages SET keep_until = now() - interval '1 minute'"
        " WHERE message_id LIKE $1",
        video_id,
    )
    assert await _forget(ingest) == 1
    after = await ingest.client.post(video, json={"percent": 75})
    assert after.json() == {"success": True, "published": 1, "duplicates": 0}
    assert await _published(ingest, 6) == ONCE + Counter({TouchpointType.VIDEO_PROGRESS: 1})


async def test_plain_messageids_are_forgotten_after_the_dedupe_window(ingest: Ingest) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = {"old": f"old-{tag}", "recent": f"recent-{tag}", "new": f"new-{tag}"}
    for message_id in ids.values():
        answer = await ingest.post(
            "/v1/track", {"userId": "p-1", "event": "Seen", "messageId": message_id}
        )
        assert answer.json()["published"] == 1
    window = ingest.settings.ingest_dedupe_days
    ages = {ids["old"]: window + 1, ids["recent"]: window - 1, ids["new"]: 0}
    for message_id, days in ages.items():
        await _sql(
            ingest,
            "UPDATE ingest_messages SET received_at = now() - make_interval(days => $2)"
            " WHERE message_id = $1",
            message_id,
            days,
        )

    assert await _forget(ingest) == 1
    left = await _sql(ingest, "SELECT message_id FROM ingest_messages ORDER BY 1")
    assert [r["message_id"] for r in left] == sorted([ids["new"], ids["recent"]])

    # Within the window a retry is a duplicate; after it, the retry is published again.
    for message_id, published in ((ids["recent"], 0), (ids["new"], 0), (ids["old"], 1)):
        body = {"userId": "p-1", "event": "Seen", "messageId": message_id}
        answer = await ingest.post("/v1/track", body)
        assert answer.json() == {
            "success": True,
            "published": published,
            "duplicates": 1 - published,
        }
    events = await ingest.messages(4, timeout_s=5)
    assert Counter(e.message_id for e in events if isinstance(e, TouchpointEvent)) == Counter(
        {ids["old"]: 2, ids["recent"]: 1, ids["new"]: 1}
    )


@pytest.fixture
async def pool(settings: Settings, fresh_database: str) -> AsyncIterator[asyncpg.Pool]:
    await migrate(fresh_database)
    pool = await create_pool(settings, dsn=fresh_database)
    try:
        yield pool
    finally:
        await pool.close()


async def test_a_group_keeps_each_messageid_until_the_latest_expiry_asked(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    source = await SourceAuth(pool).by_write_key((await add_source(pool, "links")).write_key)
    assert source is not None
    now = datetime.now(UTC)
    day = timedelta(days=1)

    def request(message_ids: list[str], keep_until: datetime | None) -> _Request:
        received = normalise.Received(source.name, source.id, now, timedelta())
        calls = [
            Track.model_validate({"userId": "p-1", "event": "Seen", "messageId": m})
            for m in message_ids
        ]
        return _Request(source, calls, message_ids, received, keep_until)

    group = [
        request(["twice"], now + day),
        request(["twice", "longer"], now + 3 * day),
        request(["plain", "shorter"], None),
        request(["shorter"], now + 2 * day),
    ]
    ingestor = Ingestor(pool, Producer(settings, client_id="test-keep", timeout_s=1), settings)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO ingest_messages (source_id, message_id, keep_until)"
            " VALUES ($1, 'longer', $2), ($1, 'shorter', $3)",
            source.id,
            now + 9 * day,
            now + day,
        )
        fresh = await ingestor._claim(conn, group)
        await ingestor._keep(conn, group)
        rows = await conn.fetch("SELECT message_id, keep_until FROM ingest_messages")
    assert fresh == {(source.id, "twice"), (source.id, "plain")}
    assert {r["message_id"]: r["keep_until"] for r in rows} == {
        "twice": now + 3 * day,  # the later of the two requests in the group
        "longer": now + 9 * day,  # never shortened
        "shorter": now + 2 * day,  # extended
        "plain": None,
    }
