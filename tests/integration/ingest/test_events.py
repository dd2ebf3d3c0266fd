"""The event API against the real broker and database: accepted means on Kafka, once."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid

import asyncpg

from services.ingest.sources import add_source, revoke_source
from shared.contract import Channel, IdentifyEvent, TouchpointEvent, TouchpointType

from .conftest import Ingest


def _track(prospect: str, **extra: object) -> dict[str, object]:
    return {"userId": prospect, "event": "Form Submitted", "messageId": str(uuid.uuid4()), **extra}


async def test_track_is_normalised_and_published_keyed_by_prospect(ingest: Ingest) -> None:
    body = _track(
        "ana@example.com",
        timestamp="2026-05-01T14:00:00+02:00",
        properties={"form": "demo"},
        context={"campaign": {"source": "google", "medium": "cpc", "name": "spring"}},
    )
    response = await ingest.post("/v1/track", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "published": 1, "duplicates": 0}
    [event] = await ingest.messages(1)
    assert isinstance(event, TouchpointEvent)
    assert event.prospect_id == "ana@example.com"
    assert event.type is TouchpointType.FORM_SUBMITTED
    assert event.channel is Channel.PAID_SEARCH
    assert event.campaign is not None
    assert event.campaign.name == "spring"
    assert event.occurred_at.isoformat() == "2026-05-01T12:00:00+00:00"
    assert event.source == "test-source"
    assert event.properties == {"form": "demo"}


async def test_page_identify_alias_and_screen_are_accepted(ingest: Ingest) -> None:
    anon = f"anon-{uuid.uuid4()}"
    calls = [
        (
            "/v1/page",
            {"anonymousId": anon, "name": "Pricing", "properties": {"url": "https://x.es/p"}},
        ),
        ("/v1/screen", {"anonymousId": anon, "name": "Home"}),
        ("/v1/identify", {"anonymousId": anon, "userId": "u-1", "traits": {"email": "u@x.es"}}),
        ("/v1/alias", {"previousId": "old-id", "userId": "u-1"}),
    ]
    for path, body in calls:
        response = await ingest.post(path, body)
        assert response.status_code == 200, (path, response.text)
    events = await ingest.messages(4)
    assert [type(e).__name__ for e in events if e.prospect_id == anon] == ["TouchpointEvent"] * 2
    identifies = [e for e in events if isinstance(e, IdentifyEvent)]
    assert {(e.prospect_id, e.anonymous_id) for e in identifies} == {
        ("u-1", anon),
        ("u-1", "old-id"),
    }


async def test_retried_message_id_is_published_once(ingest: Ingest) -> None:
    body = _track("p-retry")
    answers = await asyncio.gather(*(ingest.post("/v1/track", body) for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert sum(a.json()["published"] for a in answers) == 1
    batch = {"batch": [{"type": "track", **body}, {"type": "track", **_track("p-retry")}]}
    again = await ingest.post("/v1/batch", batch)
    assert again.json() == {"success": True, "published": 1, "duplicates": 1}
    events = await ingest.messages(2)
    assert len(events) == 2
    assert len({e.event_id for e in events}) == 2


async def test_identify_stitches_later_anonymous_events_to_the_user(ingest: Ingest) -> None:
    anon = f"anon-{uuid.uuid4()}"
    before = await ingest.post("/v1/page", {"anonymousId": anon, "name": "Landing"})
    linked = await ingest.post("/v1/identify", {"anonymousId": anon, "userId": "lead-7"})
    after = await ingest.post("/v1/track", {"anonymousId": anon, "event": "Video Progress"})
    # A second identify cannot move the anonymous id to someone else (first link wins).
    await ingest.post("/v1/identify", {"anonymousId": anon, "userId": "intruder"})
    later = await ingest.post("/v1/track", {"anonymousId": anon, "event": "PDF Downloaded"})
    assert all(r.status_code == 200 for r in (before, linked, after, later))
    records = await ingest.records(5)
    assert len(records) == 5
    touchpoints = [(key, e) for key, e in records if isinstance(e, TouchpointEvent)]
    assert {e.name: e.prospect_id for _, e in touchpoints} == {
        "Landing": anon,
        "Video Progress": "lead-7",
        "PDF Downloaded": "lead-7",
    }
    # Keyed by the prospect they reach, so the user's consumer gets them in order.
    assert {e.name: key for key, e in touchpoints} == {
        "Landing": anon.encode(),
        "Video Progress": b"lead-7",
        "PDF Downloaded": b"lead-7",
    }
    identifies = [(key, e) for key, e in records if isinstance(e, IdentifyEvent)]
    assert {(key, e.prospect_id, e.anonymous_id) for key, e in identifies} == {
        (b"lead-7", "lead-7", anon),
        (b"intruder", "intruder", anon),
    }


async def test_batch_is_all_or_nothing_and_names_each_bad_index(ingest: Ingest) -> None:
    batch = {
        "batch": [
            {"type": "track", "userId": "a", "event": "ok"},
            {"type": "track", "event": "no one"},
            {"type": "page", "userId": 3},
            {"type": "nonsense", "userId": "a"},
        ]
    }
    response = await ingest.post("/v1/batch", batch)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"batch[1]", "batch[2].userId", "batch[3]"}
    assert await ingest.messages(1, timeout_s=2) == []


async def test_batch_context_applies_to_each_call(ingest: Ingest) -> None:
    batch = {
        "context": {"campaign": {"source": "newsletter", "medium": "email"}},
        "batch": [{"type": "track", "userId": "b", "event": "Email Clicked"}],
    }
    assert (await ingest.post("/v1/batch", batch)).status_code == 200
    [event] = await ingest.messages(1)
    assert isinstance(event, TouchpointEvent)
    assert event.channel is Channel.EMAIL


async def test_error_statuses(ingest: Ingest) -> None:
    client = ingest.client
    auth = (ingest.write_key, "")
    assert (await client.post("/v1/track", json=_track("x"))).status_code == 401
    assert (await ingest.post("/v1/track", _track("x"), key="tk_wrong")).status_code == 401
    bad_json = await client.post("/v1/track", content=b'{"userId": ', auth=auth)
    assert bad_json.status_code == 400
    assert "JSON" in bad_json.json()["message"]
    invalid = await ingest.post("/v1/track", {"userId": "x", "timestamp": "yesterday"})
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.json()["errors"]} == {"event", "timestamp"}
    huge = _track("x", properties={"blob": "x" * 33_000})
    assert (await ingest.post("/v1/track", huge)).status_code == 413
    big_batch = {"batch": [{"type": "track", **_track("x", properties={"b": "x" * 30_000})}] * 17}
    assert (await ingest.post("/v1/batch", big_batch)).status_code == 413
    one_big = {"batch": [{"type": "track", **huge}]}
    too_big_event = await ingest.post("/v1/batch", one_big)
    assert too_big_event.status_code == 413
    assert too_big_event.json()["errors"] == [
        {"field": "batch[0]", "message": "event larger than 32 KB"}
    ]
    assert await ingest.messages(1, timeout_s=2) == []


async def test_gzip_bodies_are_accepted(ingest: Ingest) -> None:
    track = _track("gz", properties={"form": "gzipped"})
    body = gzip.compress(json.dumps(track).encode())
    response = await ingest.client.post(
        "/v1/track",
        content=body,
        headers={"content-encoding": "gzip", "content-type": "application/json"},
        auth=(ingest.write_key, ""),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "published": 1, "duplicates": 0}
    [(key, event)] = await ingest.records(1)
    assert isinstance(event, TouchpointEvent)
    assert key == b"gz"
    assert (event.prospect_id, event.name, event.message_id) == (
        "gz",
        "Form Submitted",
        track["messageId"],
    )
    assert event.type is TouchpointType.FORM_SUBMITTED
    assert event.source == "test-source"
    assert event.properties == {"form": "gzipped"}


async def test_revoked_key_is_refused(ingest: Ingest) -> None:
    conn = await asyncpg.connect(ingest.dsn)
    try:
        source = await add_source(conn, "short-lived")
        assert (
            await ingest.post("/v1/track", _track("r"), key=source.write_key)
        ).status_code == 200
        await revoke_source(conn, "short-lived")
    finally:
        await conn.close()
    # Revocation takes effect once the auth cache entry expires.
    await asyncio.sleep(5.2)
    assert (await ingest.post("/v1/track", _track("r"), key=source.write_key)).status_code == 401


async def test_rate_limit_answers_429_with_retry_after(ingest: Ingest) -> None:
    conn = await asyncpg.connect(ingest.dsn)
    try:
        source = await add_source(conn, "slow", rate_limit=2)
    finally:
        await conn.close()
    statuses = [
        (await ingest.post("/v1/track", _track("rl"), key=source.write_key)) for _ in range(6)
    ]
    assert [r.status_code for r in statuses][:4] == [200, 200, 200, 200]
    limited = statuses[-1]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
