"""Tracking links: opens, clicks, video, PDF, webinar, unsubscribe, feedback -> touchpoints.

Each link carries signed :class:`~shared.tracking.LinkClaims`. A genuine, unexpired
token becomes one Segment track call from the built-in ``tracking`` source, through
the same pipeline as ``/v1/track``: 503 while Kafka is down, messageId dedupe (links
that count once use a deterministic messageId, remembered until the link expires). A
forged (403) or expired (410) token publishes nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from string import Template
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from shared.contract.enums import Emotion, TouchpointType
from shared.http import ApiError, from_validation_error
from shared.tracking import (
    ExpiredToken,
    ForgedToken,
    LinkClaims,
    LinkKind,
    keys_of,
    verify_link,
)

from .body import read_body
from .events import Ok, accept, parse
from .segment import Text, Track
from .sources import Source, builtin_source
from .state import IngestState, ingest_state

SOURCE_NAME = "tracking"
MAX_BEACON_BYTES = 1024
MAX_FEEDBACK_BYTES = 32 * 1024

# The smallest transparent GIF: 1x1, two-colour palette, index 0 transparent.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
# The URL holds the token: keep it from video hosts and redirect targets (Referer).
PRIVATE = {**NO_CACHE, "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


class Tracking:
    """The router's resources: the verifying keys and the service's pool."""

    def __init__(self, pool: asyncpg.Pool, keys: tuple[str, ...]) -> None:
        self.pool = pool
        self.keys = keys
        self._source: Source | None = None

    async def source(self) -> Source:
        if self._source is None:
            self._source = await builtin_source(self.pool, SOURCE_NAME)
        return self._source


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # FastAPI runs a router's lifespan inside the app's, so app.state.ingest exists here.
    state: IngestState = app.state.ingest
    app.state.tracking = Tracking(state.pool, keys_of(state.settings))
    yield


router = APIRouter(prefix="/t", tags=["tracking"], lifespan=_lifespan)

ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Forged token"},
    410: {"description": "Expired link"},
    429: {"description": "Tracking over its rate limit; see Retry-After"},
    503: {"description": "Kafka or PostgreSQL unavailable; retry after Retry-After"},
}
TARGET_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"description": "The link has no target URL"},
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {"description": "The body is not JSON (or too many form fields)"},
    413: {"description": "Body too large"},
    415: {"description": "Unsupported Content-Encoding"},
}
PAGE_ERRORS: dict[int | str, dict[str, Any]] = {403: ERRORS[403], 410: ERRORS[410]}
REDIRECT: dict[str, Any] = {"status_code": 302, "response_class": RedirectResponse}


class VideoBeacon(BaseModel):
    percent: Literal[25, 50, 75, 100]


class Feedback(BaseModel):
    model_config = ConfigDict(extra="ignore")

    emotion: Emotion
    score: int | None = Field(None, ge=1, le=5)
    comment: Text | None = Field(None, max_length=2000)


def _json_body(model: type[BaseModel], *also: str) -> dict[str, Any]:
    schema = {"schema": model.model_json_schema()}
    types = ("application/json", *also)
    return {"requestBody": {"required": True, "content": dict.fromkeys(types, schema)}}


async def _tracking(request: Request) -> Tracking:
    tracking: Tracking = request.app.state.tracking
    return tracking


Links = Annotated[Tracking, Depends(_tracking)]


_KINDS: dict[str, LinkKind] = {
    "/t/o/{token}": "o",
    "/t/c/{token}": "c",
    "/t/v/{token}": "v",
    "/t/d/{token}": "d",
    "/t/w/{token}/register": "w/register",
    "/t/w/{token}/attend": "w/attend",
    "/t/u/{token}": "u",
    "/t/f/{token}": "f",
}


async def _verified(token: str, links: Links, request: Request) -> LinkClaims:
    try:
        claims = verify_link(links.keys, token, time.time())
    except ExpiredToken as exc:
        raise ApiError(410, "this link has expired") from exc
    except ForgedToken as exc:
        raise ApiError(403, "this link is not valid") from exc
    # A link works only on the endpoint it was signed for: an open pixel's token, say,
    # cannot unsubscribe anyone.
    route = request.scope.get("route")
    expected = _KINDS.get(getattr(route, "path", ""))
    if claims.kind is not None and claims.kind != expected:
        raise ApiError(403, "this link is not valid here")
    return claims


Claims = Annotated[LinkClaims, Depends(_verified)]


def once(kind: str, *parts: str) -> str:
    """A messageId equal for equal parts, so the pipeline publishes the event once.

    Hashed: prospect ids may contain ':' (ambiguous when joined) and reach 200 chars.
    """
    return f"{kind}:{hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]}"


@dataclass(frozen=True, slots=True)
class Hit:
    """A genuine link being followed, and what recording it takes."""

    claims: LinkClaims
    state: IngestState
    links: Tracking
    user_agent: str | None

    @property
    def target(self) -> str:
        """The signed URL to send the prospect to; 404 when the link has none."""
        if self.claims.url is None:
            raise ApiError(404, "this link has no target")
        return self.claims.url

    async def record(
        self,
        event: TouchpointType,
        *,
        message_id: str | None = None,
        extra: dict[str, JsonValue] | None = None,
    ) -> Ok:
        claims = self.claims
        properties: dict[str, JsonValue] = {
            "journey": claims.journey,
            "journey_version": claims.journey_version,
            "step": claims.step,
            "content": claims.content,
            "command_id": claims.command_id,
            "channel": claims.channel.value,
            **(extra or {}),
        }
        track = Track(
            user_id=claims.prospect_id,
            message_id=message_id,
            event=event.value,
            properties=properties,
            context={"userAgent": self.user_agent[:500]} if self.user_agent else {},
        )
        # A messageId that counts once is remembered for as long as the link works, not
        # only for the dedupe window: a replay of it months later is still a duplicate.
        keep_until = datetime.fromtimestamp(claims.expires_at, UTC) if message_id else None
        source = await self.links.source()
        return await accept(self.state, source, [track], keep_until=keep_until)


async def _hit(
    request: Request,
    claims: Claims,
    state: Annotated[IngestState, Depends(ingest_state)],
    links: Links,
) -> Hit:
    return Hit(claims, state, links, request.headers.get("user-agent"))


Followed = Annotated[Hit, Depends(_hit)]


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=302, headers=PRIVATE)


_LAYOUT = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="robots" content="noindex">
<title>$title</title>
<style nonce="$nonce">
body { font: 1rem/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
video { width: 100%; height: auto; background: #000; }
fieldset, label, select, textarea { display: block; margin: 0 0 1rem; }
textarea { width: 100%; }
button { font: inherit; padding: 0.5rem 1rem; }
</style>
</head>
<body>
<main>
<h1>$title</h1>
$body
</main>
$script
</body>
</html>
""")


def _page(title: str, body: str, *, script: str = "") -> HTMLResponse:
    """A small page; ``body`` must be escaped already. Inline code runs only by nonce."""
    nonce = secrets.token_urlsafe(16)
    csp = (
        "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self';"
        f" style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self';"
        " media-src http: https:"
    )
    html = _LAYOUT.substitute(
        title=escape(title),
        body=body,
        nonce=nonce,
        script=f'<script nonce="{nonce}">{script}</script>' if script else "",
    )
    return HTMLResponse(html, headers={**PRIVATE, "Content-Security-Policy": csp})


_VIDEO_JS = """
(function () {
  "use strict";
  var video = document.getElementById("video");
  var sent = {};
  function beacon(percent) {
    if (sent[percent]) { return; }
    sent[percent] = true;
    fetch(window.location.pathname, {
      method: "POST",
      keepalive: true,
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({percent: percent})
    }).then(
      function (answer) { if (answer.status >= 500) { sent[percent] = false; } },
      function () { sent[percent] = false; }
    );
  }
  function progress() {
    if (!isFinite(video.duration) || video.duration <= 0) { return; }
    var seconds = 0;
    for (var i = 0; i < video.played.length; i++) {
      seconds += video.played.end(i) - video.played.start(i);
    }
    // Share actually played, so seeking to the end is not watching it.
    var percent = 100 * seconds / video.duration;
    [25, 50, 75].forEach(function (m) { if (percent >= m) { beacon(m); } });
    if (video.ended && percent >= 95) { beacon(100); }
  }
  video.addEventListener("timeupdate", progress);
  video.addEventListener("ended", progress);
})();
"""


def _feedback_form(emotion: Emotion | None) -> str:
    if emotion is None:
        choices = "".join(
            f'<label><input type="radio" name="emotion" value="{e.value}" required>'
            f" {e.value.capitalize()}</label>"
            for e in Emotion
        )
        rating = f"<fieldset><legend>How was it?</legend>{choices}</fieldset>"
    else:
        rating = f'<input type="hidden" name="emotion" value="{escape(emotion.value)}">'
    scores = "".join(f"<option>{n}</option>" for n in range(1, 6))
    return (
        f'<form method="post">{rating}'
        '<label for="score">Score from 1 (poor) to 5 (excellent), optional</label>'
        f'<select id="score" name="score"><option value="">-</option>{scores}</select>'
        '<label for="comment">Anything to add? (optional)</label>'
        '<textarea id="comment" name="comment" rows="5" maxlength="2000"></textarea>'
        '<button type="submit">Send</button></form>'
    )


def _channel(claims: LinkClaims) -> str:
    return escape(claims.channel.value.replace("_", " "))


@router.get(
    "/o/{token}",
    summary="Email open pixel (1x1 transparent GIF)",
    responses={**ERRORS, 200: {"content": {"image/gif": {}}}},
)
async def email_opened(hit: Followed) -> Response:
    await hit.record(TouchpointType.EMAIL_OPENED)
    return Response(PIXEL, media_type="image/gif", headers=PRIVATE)


@router.get("/c/{token}", summary="Click, then redirect", responses=TARGET_ERRORS, **REDIRECT)
async def email_clicked(hit: Followed) -> RedirectResponse:
    # Only ever the signed URL: a ?url= (or anything else in the request) is ignored.
    await hit.record(TouchpointType.EMAIL_CLICKED, extra={"url": hit.target})
    return _redirect(hit.target)


@router.get(
    "/v/{token}",
    summary="Video page reporting 25/50/75/100%",
    response_class=HTMLResponse,
    responses={**PAGE_ERRORS, 404: TARGET_ERRORS[404]},
)
async def video_page(hit: Followed) -> HTMLResponse:
    url = escape(hit.target)
    body = (
        f'<video id="video" controls playsinline preload="metadata" src="{url}"'
        ' aria-label="Video"><p>Your browser cannot play this video here:'
        f' <a href="{url}">open it directly</a>.</p></video>'
    )
    return _page("Your video", body, script=_VIDEO_JS)


@router.post(
    "/v/{token}",
    summary="Video milestone (once per prospect, content and milestone)",
    responses={**BODY_ERRORS, 422: {"description": "percent is not 25, 50, 75 or 100"}},
    openapi_extra=_json_body(VideoBeacon),
)
async def video_progress(request: Request, hit: Followed) -> Ok:
    beacon = parse(VideoBeacon, await read_body(request, MAX_BEACON_BYTES))
    claims = hit.claims
    return await hit.record(
        TouchpointType.VIDEO_PROGRESS,
        message_id=once("video", claims.prospect_id, claims.content, str(beacon.percent)),
        extra={"percent": beacon.percent},
    )


@router.get(
    "/d/{token}", summary="PDF download, then redirect", responses=TARGET_ERRORS, **REDIRECT
)
async def pdf_downloaded(hit: Followed) -> RedirectResponse:
    await hit.record(TouchpointType.PDF_DOWNLOADED, extra={"url": hit.target})
    return _redirect(hit.target)


@router.get(
    "/w/{token}/register",
    summary="Webinar registration (once); confirmation page, or redirect to the link's URL",
    response_class=HTMLResponse,
    responses={**ERRORS, 302: {"description": "When the link has a URL"}},
)
async def webinar_registered(hit: Followed) -> Response:
    url = hit.claims.url
    await hit.record(
        TouchpointType.WEBINAR_REGISTERED,
        message_id=once("webinar_registered", hit.claims.prospect_id, hit.claims.content),
        extra={"url": url} if url else None,
    )
    if url:
        return _redirect(url)
    return _page("You are registered", "<p>We will send you the link to join before it starts.</p>")


@router.get(
    "/w/{token}/attend",
    summary="Webinar attendance (once), then redirect to the join link",
    responses=TARGET_ERRORS,
    **REDIRECT,
)
async def webinar_attended(hit: Followed) -> RedirectResponse:
    await hit.record(
        TouchpointType.WEBINAR_ATTENDED,
        message_id=once("webinar_attended", hit.claims.prospect_id, hit.claims.content),
        extra={"url": hit.target},
    )
    return _redirect(hit.target)


@router.get(
    "/u/{token}",
    summary="Unsubscribe confirmation page (changes nothing)",
    response_class=HTMLResponse,
    responses=PAGE_ERRORS,
)
async def unsubscribe_page(claims: Claims) -> HTMLResponse:
    # Mail scanners prefetch links: a GET must never unsubscribe.
    body = (
        f"<p>Stop receiving {_channel(claims)} messages from us?</p>"
        '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return _page("Unsubscribe", body)


@router.post(
    "/u/{token}",
    summary="Unsubscribe (RFC 8058 one-click)",
    response_class=HTMLResponse,
    responses=ERRORS,
)
async def unsubscribe(hit: Followed) -> HTMLResponse:
    # The token is the authorisation, whatever the body. Suppression first, then the
    # touchpoint: both are idempotent, so the retry of a request that failed half-way
    # (503 while Kafka is down) completes what is missing, and meanwhile delivery
    # already honours the suppression.
    prospect, channel = hit.claims.prospect_id, hit.claims.channel.value
    await hit.links.pool.execute(
        "INSERT INTO suppressions (prospect_id, channel, reason) VALUES ($1, $2, 'unsubscribed')"
        " ON CONFLICT DO NOTHING",
        prospect,
        channel,
    )
    await hit.record(TouchpointType.UNSUBSCRIBED, message_id=once("unsub", prospect, channel))
    text = f"<p>You will not receive {_channel(hit.claims)} messages from us any more.</p>"
    return _page("You are unsubscribed", text)


def _feedback(fields: dict[str, str]) -> Feedback:
    try:
        return Feedback.model_validate(fields)
    except ValidationError as exc:
        raise from_validation_error(exc) from exc


@router.get(
    "/f/{token}",
    summary="Feedback form; with ?emotion=... a one-click rating, recorded once",
    responses={**ERRORS, 422: {"description": "emotion is not positive, neutral or negative"}},
)
async def feedback_page(hit: Followed, emotion: str | None = None) -> HTMLResponse:
    if emotion is None:
        return _page("Your feedback", _feedback_form(None))
    rated = _feedback({"emotion": emotion})
    claims = hit.claims
    await hit.record(
        TouchpointType.FEEDBACK,
        # Repeated clicks (and prefetches) of the same rating link count once.
        message_id=once("feedback", claims.prospect_id, claims.step, claims.content, rated.emotion),
        extra=rated.model_dump(mode="json", exclude_none=True),
    )
    body = "<p>Thank you, your rating is recorded.</p>" + _feedback_form(rated.emotion)
    return _page("Thank you", body)


@router.post(
    "/f/{token}",
    summary="Feedback (JSON or form): emotion, optional score 1-5 and comment",
    responses={**BODY_ERRORS, 422: {"description": "Invalid fields, each named"}},
    openapi_extra=_json_body(Feedback, "application/x-www-form-urlencoded"),
)
async def feedback(request: Request, hit: Followed) -> Response:
    raw = await read_body(request, MAX_FEEDBACK_BYTES)
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    form = content_type == "application/x-www-form-urlencoded"
    if form:
        try:
            # Blank fields (no score chosen, no comment) are left out: not given.
            fields = dict(parse_qsl(raw.decode("utf-8", "replace"), max_num_fields=20))
        except ValueError as exc:
            raise ApiError(400, "too many form fields") from exc
        given = _feedback(fields)
    else:
        given = parse(Feedback, raw)
    ok = await hit.record(
        TouchpointType.FEEDBACK, extra=given.model_dump(mode="json", exclude_none=True)
    )
    if form:
        return _page("Thank you", "<p>Thank you, your feedback is recorded.</p>")
    return JSONResponse(ok.model_dump())
