"""Hostile HTTP input to ingest: refused with a 4xx naming the problem, or published as
given; never a 500, never a Kafka record a consumer cannot store."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx

from services.ingest.sources import add_source
from shared.contract import IdentifyEvent, TouchpointEvent
from shared.tracking import LinkClaims, expiry, link_url

from .conftest import Ingest

JSON = {"content-type": "application/json"}


def _track(**fields: Any) -> dict[str, Any]:
    return {"userId": f"u-{uuid.uuid4().hex[:8]}", "event": "Form Submitted", **fields}


async def _raw(ingest: Ingest, path: str, body: bytes, **headers: str) -> httpx.Response:
    return await ingest.client.post(
        path, content=body, headers={**JSON, **headers}, auth=(ingest.write_key, "")
    )


def _fields(response: httpx.Response) -> dict[str, str]:
    return {e["field"]: e["message"] for e in response.json().get("errors", [])}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_oversized_bodies_deep_nesting_and_invalid_text_are_refused(
    ingest: Ingest,
) -> None:
    gz = {"content-encoding": "gzip"}
    bomb = gzip.compress(json.dumps(_track(properties={"x": "0" * 5_000_000})).encode())
    assert len(bomb) < 32 * 1024  # small on the wire, 5 MB once inflated
    assert (await _raw(ingest, "/v1/track", bomb, **gz)).status_code == 413
    batch = {"batch": [{"type": "track", **_track(properties={"x": "0" * 600_000})}]}
    batch_bomb = gzip.compress(json.dumps(batch).encode())
    assert (await _raw(ingest, "/v1/batch", batch_bomb, **gz)).status_code == 413
    deep = _nested(100_000)  # inflated: over the size limit before any parsing
    assert (await _raw(ingest, "/v1/track", gzip.compress(deep.encode()), **gz)).status_code == 413

    # 10 000 levels fit in 20 KB: the parser's depth limit refuses them, not a RecursionError.
    for path, template in [
        ("/v1/track", '{"userId":"u","event":"e","properties":{"x":@}}'),
        ("/v1/identify", '{"userId":"u","traits":{"t":@}}'),
        ("/v1/batch", '{"batch":[{"type":"track","userId":"u","event":"e","context":{"c":@}}]}'),
        ("/v1/track", "@"),
    ]:
        answer = await _raw(ingest, path, template.replace("@", _nested(10_000)).encode())
        assert answer.status_code == 400, (path, answer.text)
        assert "recursion limit exceeded" in answer.json()["message"]

    for body, encoding in [
        (b'{"userId":"u","event":"caf\xe9"}', "identity"),  # Latin-1, not UTF-8
        (b'{"userId":"u","event":"\xed\xa0\x80"}', "identity"),  # an encoded surrogate
        (b'{"userId":"u","event":"\xff\xfe"}', "gzip"),
        (b'{"userId":"u","event":"\\ud800"}', "identity"),  # a lone surrogate escape
        (b'{"userId":"u","event":"\\udc00x"}', "identity"),
        (b'{"userId":"u","event":"a\x00b"}', "identity"),  # a raw NUL in a string
    ]:
        content = gzip.compress(body) if encoding == "gzip" else body
        answer = await _raw(ingest, "/v1/track", content, **{"content-encoding": encoding})
        assert answer.status_code == 400, (body, answer.text)
        assert "not valid JSON" in answer.json()["message"]
    assert await ingest.messages(1, timeout_s=1) == []


async def test_nesting_the_parser_accepts_and_huge_numbers_are_published_as_given(
    ingest: Ingest,
) -> None:
    deep = json.loads(_nested(150))
    answer = await ingest.post("/v1/track", _track(userId="deep", properties={"deep": deep}))
    assert answer.status_code == 200, answer.text
    numbers = {"big": 2**70, "negative": -(2**70), "wide": 10**30, "max": 1e308, "tiny": 5e-324}
    answer = await ingest.post("/v1/identify", {"userId": "numbers", "traits": numbers})
    assert answer.status_code == 200, answer.text
    events = {e.prospect_id: e for e in await ingest.messages(2)}
    track, identify = events["deep"], events["numbers"]
    assert isinstance(track, TouchpointEvent)
    assert track.properties["deep"] == deep
    assert isinstance(identify, IdentifyEvent)
    assert identify.traits == numbers
    assert all(type(identify.traits[k]) is type(v) for k, v in numbers.items())


async def test_numbers_json_cannot_hold_are_a_422_naming_the_field(ingest: Ingest) -> None:
    for literal in ["NaN", "Infinity", "-Infinity", "1e400", "-1E999"]:
        body = '{"userId":"u","event":"e","properties":{"score":@}}'.replace("@", literal)
        answer = await _raw(ingest, "/v1/track", body.encode())
        assert answer.status_code == 422, answer.text
        assert "score" in _fields(answer)["properties"]
        assert "not a JSON number" in _fields(answer)["properties"]
        batch = '{"batch":[{"type":"identify","userId":"u","traits":{"n":[1,@]}}]}'.replace(
            "@", literal
        )
        answer = await _raw(ingest, "/v1/batch", batch.encode())
        assert answer.status_code == 422, answer.text
        assert "n[1]" in _fields(answer)["batch[0].traits"]
    assert await ingest.messages(1, timeout_s=1) == []


async def test_implausible_timestamps_are_clamped_to_the_receive_time(ingest: Ingest) -> None:
    timestamps = [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00-01:00",
        "1900-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59+14:00",
        "9999-12-31T23:59:59-01:00",  # year 10000 in UTC
    ]
    for n, timestamp in enumerate(timestamps):
        answer = await ingest.post("/v1/track", _track(userId=f"t{n}", timestamp=timestamp))
        assert answer.status_code == 200, answer.text
        answer = await ingest.post("/v1/identify", {"userId": f"i{n}", "timestamp": timestamp})
        assert answer.status_code == 200, answer.text
    events = await ingest.messages(2 * len(timestamps))
    assert len(events) == 2 * len(timestamps)
    for event in events:
        assert isinstance(event, TouchpointEvent | IdentifyEvent)
        assert event.occurred_at == event.received_at
        if isinstance(event, TouchpointEvent):
            sent = timestamps[int(event.prospect_id[1:])]
            assert str(event.context["trayecto_clamped_timestamp"])[:10] == sent[:10]


async def test_nul_characters_are_a_422_naming_the_field(ingest: Ingest) -> None:
    two = [
        {"type": "track", **_track()},
        {"type": "identify", "userId": "u", "traits": {"t": "\x00"}},
    ]
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("/v1/track", _track(properties={"note": "a\x00b"}), "properties", "note"),
        ("/v1/track", _track(event="Form\x00Submitted"), "event", "NUL"),
        ("/v1/identify", {"userId": "u", "traits": {"\x00": 1}}, "traits", "key"),
        ("/v1/identify", {"userId": "u", "traits": {"a": [{"b": "\x00"}]}}, "traits", "a[0].b"),
        ("/v1/page", {"userId": "u", "name": "Home\x00"}, "name", "NUL"),
        ("/v1/track", _track(userId="u\x00"), "userId", "pattern"),
        ("/v1/batch", {"batch": two[:1], "context": {"ip": "\x00"}}, "context", "ip"),
        ("/v1/batch", {"batch": two}, "batch[1].traits", "t"),
    ]
    for path, body, field, where in cases:
        answer = await ingest.post(path, body)
        assert answer.status_code == 422, answer.text
        assert where in _fields(answer)[field], (body, answer.text)

    form = f"/v1/forms/demo?key={ingest.write_key}"
    comment = {"email": "ana@example.com", "comment": "hi\x00there"}
    answer = await ingest.client.post(form, data=comment)
    assert answer.status_code == 422, answer.text
    assert "comment" in _fields(answer)["traits"]
    answer = await ingest.client.post(form, data={"email": "ana@example.com", "utm_source": "\x00"})
    assert answer.status_code == 422, answer.text
    assert "campaign.source" in _fields(answer)["context"]

    conn = await asyncpg.connect(ingest.dsn)
    try:
        google_key = (await add_source(conn, "gads", google_key=True)).google_key
    finally:
        await conn.close()
    lead = {
        "lead_id": "lead-1",
        "google_key": google_key,
        "user_column_data": [{"column_id": "EMAIL", "string_value": "ana@example.com"},
                             {"column_id": "COMPANY", "string_value": "Acme\x00"}],
    }  # fmt: skip
    answer = await ingest.client.post("/v1/leads/google-ads/gads", json=lead)
    assert answer.status_code == 422, answer.text
    assert set(_fields(answer)) == {"user_column_data[1].string_value"}

    claims = LinkClaims.model_validate(
        {
            "prospect_id": "p-feedback",
            "journey": "j",
            "journey_version": 1,
            "step": "s",
            "content": "c",
            "command_id": str(uuid.uuid4()),
            "expires_at": expiry(ingest.settings, time.time()),
        }
    )
    feedback = link_url(ingest.settings, "f", claims).removeprefix(ingest.url)
    answer = await ingest.client.post(feedback, json={"emotion": "positive", "comment": "\x00"})
    assert answer.status_code == 422, answer.text
    assert set(_fields(answer)) == {"comment"}
    answer = await ingest.client.post(feedback, data={"emotion": "neutral", "comment": "a\x00"})
    assert answer.status_code == 422, answer.text
    assert await ingest.messages(1, timeout_s=1) == []


async def test_urls_that_cannot_be_parsed_are_published_as_given(ingest: Ingest) -> None:
    broken = "http://[::1/?utm_medium=cpc"  # an unclosed IPv6 bracket: not a URL
    page = {"userId": "page", "properties": {"url": broken, "referrer": "http://[zz]/"}}
    assert (await ingest.post("/v1/page", page)).status_code == 200
    track = _track(userId="track", context={"page": {"url": "https://x.es/", "referrer": broken}})
    assert (await ingest.post("/v1/track", track)).status_code == 200
    form = await ingest.client.post(
        f"/v1/forms/demo?key={ingest.write_key}",
        data={"email": "form@example.com"},
        headers={"referer": broken},
    )
    assert form.status_code == 303, form.text
    events = {e.prospect_id: e for e in await ingest.messages(4) if isinstance(e, TouchpointEvent)}
    assert events["page"].properties == page["properties"]
    assert events["form@example.com"].properties["url"] == broken
    assert {e.channel.value for e in events.values()} == {"direct"}
