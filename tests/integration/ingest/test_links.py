"""Tracking links against the real broker and database: each genuine hit is one touchpoint."""

from __future__ import annotations

import time

import asyncpg
import httpx
import pytest

from shared.contract import Channel, Emotion, TouchpointEvent, TouchpointType, WireMessage
from shared.tracking import LinkClaims, LinkKind, sign_link

from .conftest import LINK_TARGET as TARGET
from .conftest import Ingest, free_port, serve


def _touchpoints(events: list[WireMessage]) -> list[TouchpointEvent]:
    found = [e for e in events if isinstance(e, TouchpointEvent)]
    assert len(found) == len(events)
    return found


def _assert_from_link(event: TouchpointEvent, claims: LinkClaims, kind: TouchpointType) -> None:
    assert event.type is kind
    assert event.name == kind.value
    assert event.prospect_id == claims.prospect_id
    assert event.source == "tracking"
    assert event.channel is claims.channel
    for field in ("journey", "journey_version", "step", "content", "command_id"):
        assert event.properties[field] == getattr(claims, field), field
    assert event.properties["channel"] == claims.channel.value


async def _suppressions(ingest: Ingest, prospect: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(ingest.dsn)
    try:
        rows = await conn.fetch(
            "SELECT channel, reason FROM suppressions WHERE prospect_id = $1", prospect
        )
    finally:
        await conn.close()
    return [(r["channel"], r["reason"]) for r in rows]


async def test_open_pixel_answers_a_transparent_gif_and_records_the_open(ingest: Ingest) -> None:
    claims = ingest.link_claims(url=None)
    response = await ingest.client.get(
        ingest.link_path("o", claims), headers={"user-agent": "MailClient/1.0"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/gif"
    assert "no-store" in response.headers["cache-control"]
    gif = response.content
    assert gif[:6] == b"GIF89a"
    assert (gif[6:8], gif[8:10]) == (b"\x01\x00", b"\x01\x00")  # 1x1
    extension = gif.index(b"\x21\xf9\x04")  # graphic control extension
    assert gif[extension + 3] & 0x01  # transparent colour flag
    assert gif.endswith(b";")
    [event] = _touchpoints(await ingest.messages(1))
    _assert_from_link(event, claims, TouchpointType.EMAIL_OPENED)
    assert event.context["userAgent"] == "MailClient/1.0"


async def test_click_records_and_redirects_only_to_the_signed_url(ingest: Ingest) -> None:
    claims = ingest.link_claims()
    path = ingest.link_path("c", claims)
    response = await ingest.client.get(path, params={"url": "https://evil.example/phish"})
    assert response.status_code == 302, response.text
    assert response.headers["location"] == TARGET
    assert response.headers["referrer-policy"] == "no-referrer"
    no_target = await ingest.client.get(ingest.link_path("c", ingest.link_claims(url=None)))
    assert no_target.status_code == 404
    [event] = _touchpoints(await ingest.messages(1))
    _assert_from_link(event, claims, TouchpointType.EMAIL_CLICKED)
    assert event.properties["url"] == TARGET


async def test_pdf_download_records_and_redirects(ingest: Ingest) -> None:
    pdf = "https://cdn.example.com/guide.pdf"
    claims = ingest.link_claims(url=pdf, channel="web")
    response = await ingest.client.get(ingest.link_path("d", claims))
    assert response.status_code == 302
    assert response.headers["location"] == pdf
    [event] = _touchpoints(await ingest.messages(1))
    _assert_from_link(event, claims, TouchpointType.PDF_DOWNLOADED)
    assert event.channel is Channel.WEB
    assert event.properties["url"] == pdf


async def test_video_page_plays_the_signed_url_and_records_nothing(ingest: Ingest) -> None:
    video = 'https://cdn.example.com/v.mp4?a=1&b="x"'
    response = await ingest.client.get(ingest.link_path("v", ingest.link_claims(url=video)))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<html lang="en">' in page
    assert "<title>" in page
    assert 'src="https://cdn.example.com/v.mp4?a=1&amp;b=&quot;x&quot;"' in page
    assert "keepalive: true" in page
    assert "<script src" not in page  # self-contained
    nonce = page.split('<script nonce="', 1)[1].split('"', 1)[0]
    assert f"script-src 'nonce-{nonce}'" in response.headers["content-security-policy"]
    assert await ingest.messages(1, timeout_s=2) == []


async def test_video_milestones_are_published_once_each(ingest: Ingest) -> None:
    claims = ingest.link_claims(channel="video")
    path = ingest.link_path("v", claims)
    first = await ingest.client.post(path, json={"percent": 50})
    again = await ingest.client.post(path, json={"percent": 50})
    quarter = await ingest.client.post(path, json={"percent": 25})
    assert first.json() == {"success": True, "published": 1, "duplicates": 0}
    assert again.json() == {"success": True, "published": 0, "duplicates": 1}
    assert quarter.status_code == 200
    bad = await ingest.client.post(path, json={"percent": 30})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["percent"]
    assert (await ingest.client.post(path, content=b"{")).status_code == 400
    events = _touchpoints(await ingest.messages(2))
    assert sorted(e.properties["percent"] for e in events) == [25, 50]  # type: ignore[type-var]
    for event in events:
        _assert_from_link(event, claims, TouchpointType.VIDEO_PROGRESS)
    # The same milestone of the same video for someone else is their own event.
    other = ingest.link_claims(channel="video")
    assert (await ingest.client.post(ingest.link_path("v", other), json={"percent": 50})).json()[
        "published"
    ] == 1


async def test_webinar_registration_and_attendance_count_once(ingest: Ingest) -> None:
    claims = ingest.link_claims(url=None, content="webinar-q3")
    register = ingest.link_path("w/register", claims)
    pages = [await ingest.client.get(register) for _ in range(2)]
    assert [p.status_code for p in pages] == [200, 200]
    assert "registered" in pages[0].text
    join = "https://meet.example.com/j/123"
    with_join = claims.model_copy(update={"url": join})
    attends = [await ingest.client.get(ingest.link_path("w/attend", with_join)) for _ in range(2)]
    assert [(a.status_code, a.headers["location"]) for a in attends] == [(302, join)] * 2
    assert (await ingest.client.get(ingest.link_path("w/attend", claims))).status_code == 404
    redirected = await ingest.client.get(ingest.link_path("w/register", with_join))
    assert (redirected.status_code, redirected.headers["location"]) == (302, join)
    events = _touchpoints(await ingest.messages(2))
    assert sorted(e.type for e in events) == [
        TouchpointType.WEBINAR_ATTENDED,
        TouchpointType.WEBINAR_REGISTERED,
    ]
    for event in events:
        _assert_from_link(event, claims, event.type)


async def test_unsubscribe_page_does_not_unsubscribe(ingest: Ingest) -> None:
    claims = ingest.link_claims()
    response = await ingest.client.get(ingest.link_path("u", claims))
    assert response.status_code == 200
    assert '<form method="post">' in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert await _suppressions(ingest, claims.prospect_id) == []
    assert await ingest.messages(1, timeout_s=2) == []


async def test_one_click_unsubscribe_suppresses_and_publishes_once(ingest: Ingest) -> None:
    claims = ingest.link_claims()
    path = ingest.link_path("u", claims)
    one_click = await ingest.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200, one_click.text
    assert "unsubscribed" in one_click.text
    again = await ingest.client.post(path)  # empty body
    assert again.status_code == 200
    assert await _suppressions(ingest, claims.prospect_id) == [("email", "unsubscribed")]
    [event] = _touchpoints(await ingest.messages(1))
    _assert_from_link(event, claims, TouchpointType.UNSUBSCRIBED)


async def test_unsubscribe_retried_after_kafka_outage_completes(ingest: Ingest) -> None:
    port = free_port()
    down = ingest.settings.model_copy(
        update={
            "kafka_bootstrap": f"127.0.0.1:{free_port()}",  # nothing listens there
            "ingest_publish_timeout_s": 1.0,
            "ingest_port": port,
        }
    )
    from services.ingest import create_app

    server, task = await serve(create_app(down, touchpoints_topic=ingest.topic), port)
    claims = ingest.link_claims(channel="webinar")
    path = ingest.link_path("u", claims)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            failed = await client.post(path, data={"List-Unsubscribe": "One-Click"})
    finally:
        server.should_exit = True
        await task
    assert failed.status_code == 503
    assert int(failed.headers["retry-after"]) >= 1
    # Already honoured by delivery, though the touchpoint is not out yet.
    assert await _suppressions(ingest, claims.prospect_id) == [("webinar", "unsubscribed")]
    assert await ingest.messages(1, timeout_s=2) == []
    retried = await ingest.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert retried.status_code == 200
    [event] = _touchpoints(await ingest.messages(1))
    _assert_from_link(event, claims, TouchpointType.UNSUBSCRIBED)
    assert await _suppressions(ingest, claims.prospect_id) == [("webinar", "unsubscribed")]


async def test_one_click_rating_is_recorded_once_and_offers_a_comment(ingest: Ingest) -> None:
    claims = ingest.link_claims(step="after-demo", content="demo-followup")
    path = ingest.link_path("f", claims)
    rated = await ingest.client.get(path, params={"emotion": "negative"})
    assert rated.status_code == 200
    assert '<textarea id="comment" name="comment"' in rated.text
    assert '<label for="comment">' in rated.text
    assert (await ingest.client.get(path, params={"emotion": "negative"})).status_code == 200
    form = await ingest.client.get(path)
    assert form.status_code == 200
    assert 'type="radio" name="emotion"' in form.text
    bad = await ingest.client.get(path, params={"emotion": "furious"})
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["emotion"]
    [event] = _touchpoints(await ingest.messages(1))
    _assert_from_link(event, claims, TouchpointType.FEEDBACK)
    assert event.emotion is Emotion.NEGATIVE
    assert event.properties["emotion"] == "negative"
    assert (event.properties["step"], event.properties["content"]) == (
        "after-demo",
        "demo-followup",
    )


async def test_feedback_posted_as_json_or_form(ingest: Ingest) -> None:
    claims = ingest.link_claims()
    path = ingest.link_path("f", claims)
    as_json = await ingest.client.post(
        path, json={"emotion": "positive", "score": 5, "comment": "Clear & useful <3"}
    )
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["published"] == 1
    as_form = await ingest.client.post(
        path, data={"emotion": "neutral", "score": "", "comment": "ok"}
    )
    assert as_form.status_code == 200, as_form.text
    assert as_form.headers["content-type"].startswith("text/html")
    invalid = await ingest.client.post(
        path, json={"emotion": "positive", "score": 9, "comment": "x" * 2001}
    )
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.json()["errors"]} == {"score", "comment"}
    events = _touchpoints(await ingest.messages(2))
    by_emotion = {e.emotion: e for e in events}
    assert set(by_emotion) == {Emotion.POSITIVE, Emotion.NEUTRAL}
    positive, neutral = by_emotion[Emotion.POSITIVE], by_emotion[Emotion.NEUTRAL]
    _assert_from_link(positive, claims, TouchpointType.FEEDBACK)
    assert (positive.properties["score"], positive.properties["comment"]) == (
        5,
        "Clear & useful <3",
    )
    assert neutral.properties["comment"] == "ok"
    assert "score" not in neutral.properties


ENDPOINTS: list[tuple[str, LinkKind, dict[str, object]]] = [
    ("GET", "o", {}),
    ("GET", "c", {}),
    ("GET", "v", {}),
    ("POST", "v", {"json": {"percent": 25}}),
    ("GET", "d", {}),
    ("GET", "w/register", {}),
    ("GET", "w/attend", {}),
    ("GET", "u", {}),
    ("POST", "u", {"data": {"List-Unsubscribe": "One-Click"}}),
    ("GET", "f", {"params": {"emotion": "positive"}}),
    ("POST", "f", {"json": {"emotion": "positive"}}),
]


@pytest.mark.parametrize(("method", "kind", "body"), ENDPOINTS)
async def test_forged_and_expired_links_publish_nothing(
    ingest: Ingest, method: str, kind: LinkKind, body: dict[str, object]
) -> None:
    claims = ingest.link_claims().model_copy(update={"kind": kind})
    token = sign_link(ingest.settings, claims)
    genuine = ingest.link_path(kind, claims)
    assert token in genuine
    forged = genuine.replace(token, sign_link(["not-our-key"], claims))
    middle = len(token) // 3
    flipped = "A" if token[middle] != "A" else "B"
    tampered = genuine.replace(token, token[:middle] + flipped + token[middle + 1 :])
    expired = ingest.link_path(kind, claims.model_copy(update={"expires_at": int(time.time()) - 1}))
    answers = {
        name: await ingest.client.request(method, path, **body)  # type: ignore[arg-type]
        for name, path in (("forged", forged), ("tampered", tampered), ("expired", expired))
    }
    assert {name: a.status_code for name, a in answers.items()} == {
        "forged": 403,
        "tampered": 403,
        "expired": 410,
    }
    assert answers["forged"].json()["error"] == "forbidden"
    assert answers["expired"].json()["error"] == "expired"
    assert await ingest.messages(1, timeout_s=2) == []
    assert await _suppressions(ingest, claims.prospect_id) == []


async def test_a_link_works_only_on_the_endpoint_it_was_signed_for(ingest: Ingest) -> None:
    claims = ingest.link_claims()
    pixel = ingest.link_path("o", claims)  # e.g. /t/o/<token>, as delivery signs it
    token = pixel.rsplit("/", 1)[1]
    unsubscribe = await ingest.client.post(f"/t/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert unsubscribe.status_code == 403
    assert await _suppressions(ingest, claims.prospect_id) == []
    click = await ingest.client.get(f"/t/c/{token}")
    assert click.status_code == 403
    assert (await ingest.client.get(pixel)).status_code == 200
    [event] = _touchpoints(await ingest.messages(1))
    assert event.type is TouchpointType.EMAIL_OPENED
