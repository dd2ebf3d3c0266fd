"""Segment calls → wire-contract events. Pure: no I/O, the caller passes what it looked up.

Channel attribution follows the usual analytics conventions: explicit UTM medium
first, then ad-platform click ids, then the referrer; nothing at all means direct.
"""

from __future__ import annotations

import functools
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import JsonValue

from shared.contract import Campaign, IdentifyEvent, TouchpointEvent
from shared.contract.enums import Channel, Emotion, TouchpointType
from shared.ids import Namespace
from shared.trusted import construct

from .segment import Alias, Identify, Page, Track

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
EVENT_ID_NAMESPACE = uuid.UUID("6f1d0c3e-1c51-4b8e-9a3f-7472617965a1")
_EVENT_IDS = Namespace(EVENT_ID_NAMESPACE)

_PAID_SEARCH_MEDIA = {"cpc", "ppc", "paid_search", "paidsearch", "sem", "search_ads"}
_PAID_SOCIAL_MEDIA = {"paid_social", "paidsocial", "social_paid", "social_ads", "paid-social"}
_DISPLAY_MEDIA = {"display", "banner", "cpm", "programmatic", "video_ads", "native"}
_EMAIL_MEDIA = {"email", "e-mail", "e_mail", "newsletter", "mail"}
_SOCIAL_MEDIA = {"social", "social-network", "social_network", "sm", "organic_social"}
_REFERRAL_MEDIA = {"referral", "affiliate", "partner"}
_SOCIAL_SOURCES = {
    "facebook", "instagram", "linkedin", "twitter", "tiktok", "youtube", "reddit",
    "pinterest", "meta", "fb", "ig", "threads", "whatsapp",
}  # fmt: skip
_SOCIAL_HOSTS = {"t.co", "x.com", "lnkd.in", "fb.me", "youtu.be"}
_SEARCH_ENGINES = ("google.", "bing.", "duckduckgo.", "yahoo.", "yandex.", "baidu.", "ecosia.")
_SEARCH_CLICK_IDS = ("gclid", "gbraid", "wbraid", "msclkid", "dclid")
_SOCIAL_CLICK_IDS = ("ttclid", "li_fat_id", "twclid", "sccid", "fbclid")

_SEPARATORS = re.compile(r"[\s\-]+")
_CHANNELS = {c.value for c in Channel}
_EMOTIONS = {e.value for e in Emotion}
_EVENT_TYPES: dict[str, TouchpointType] = {
    **{t.value: t for t in TouchpointType},
    "lead_created": TouchpointType.LEAD_CAPTURED,
    "generate_lead": TouchpointType.LEAD_CAPTURED,
    "form_submit": TouchpointType.FORM_SUBMITTED,
    "signed_up": TouchpointType.FORM_SUBMITTED,
    "sign_up": TouchpointType.FORM_SUBMITTED,
    "order_completed": TouchpointType.PURCHASE,
    "checkout_completed": TouchpointType.PURCHASE,
    "email_link_clicked": TouchpointType.EMAIL_CLICKED,
    "video_content_playing": TouchpointType.VIDEO_PROGRESS,
    "video_playback_completed": TouchpointType.VIDEO_PROGRESS,
    "file_downloaded": TouchpointType.PDF_DOWNLOADED,
    "ad_clicked": TouchpointType.AD_CLICK,
    "call_completed": TouchpointType.CALL,
    "feedback_given": TouchpointType.FEEDBACK,
    "survey_answered": TouchpointType.FEEDBACK,
    "referral_sent": TouchpointType.REFERRAL_MADE,
}


@dataclass(frozen=True, slots=True)
class Received:
    """What ingest knows about a call besides its body."""

    source: str
    source_id: int
    at: datetime
    max_future: timedelta


def event_id(source_id: int, message_id: str) -> uuid.UUID:
    """The same (source, messageId) always yields the same event id: retries dedupe downstream.

    ``uuid5(EVENT_ID_NAMESPACE, "<source id>:<messageId>")``.
    """
    return _EVENT_IDS.id(f"{source_id}:{message_id}")


def touchpoint_type(event_name: str) -> TouchpointType:
    key = _SEPARATORS.sub("_", event_name.strip().lower())
    return _EVENT_TYPES.get(key, TouchpointType.CUSTOM)


def occurred_at(timestamp: datetime | None, received: Received) -> tuple[datetime, bool]:
    """The event time in UTC; the receive time when the client's clock is implausible.

    Implausible: further ahead than ``max_future``, or before 1970.
    """
    if timestamp is None:
        return received.at, False
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    if timestamp < EARLIEST or timestamp - received.at > received.max_future:
        return received.at, True
    return timestamp.astimezone(UTC), False


def campaign_of(context: dict[str, JsonValue], page_url: str | None) -> Campaign | None:
    """UTM fields from ``context.campaign``, else from the page URL's query string."""
    raw = context.get("campaign")
    fields = raw if isinstance(raw, dict) else {}
    if all(isinstance(v, str) for v in fields.values()):
        # A campaign's events share their attribution: parse it once.
        return _cached_campaign(tuple(sorted(fields.items())), page_url)
    return _campaign(fields, page_url)


@functools.lru_cache(maxsize=4096)
def _cached_campaign(fields: tuple[tuple[str, str], ...], page_url: str | None) -> Campaign | None:
    return _campaign(dict(fields), page_url)


def _campaign(raw: dict[str, Any], page_url: str | None) -> Campaign | None:
    fields = dict(raw)
    query = dict(_query(page_url))
    for key in ("source", "medium", "name", "term", "content"):
        if not fields.get(key) and query.get(f"utm_{key}"):
            fields[key] = query[f"utm_{key}"]
    if not fields.get("name") and query.get("utm_campaign"):
        fields["name"] = query["utm_campaign"]
    for key, query_key in (("campaign_id", "utm_id"), ("ad_group_id", "adgroupid")):
        if not fields.get(key) and query.get(query_key):
            fields[key] = query[query_key]
    clean = {k: str(v)[:200] for k, v in fields.items() if k in Campaign.model_fields and v}
    return Campaign(**clean) if clean else None


def channel_of(
    campaign: Campaign | None, page_url: str | None, referrer: str | None, explicit: object
) -> Channel:
    if isinstance(explicit, str) and explicit in _CHANNELS:
        return Channel(explicit)
    medium = (campaign.medium or "").strip().lower() if campaign else ""
    source = (campaign.source or "").strip().lower() if campaign else ""
    social_source = source in _SOCIAL_HOSTS or bool(set(source.split(".")) & _SOCIAL_SOURCES)
    if medium in _PAID_SEARCH_MEDIA:
        return Channel.PAID_SOCIAL if social_source else Channel.PAID_SEARCH
    if medium in _PAID_SOCIAL_MEDIA or (medium in {"cpm", "paid"} and social_source):
        return Channel.PAID_SOCIAL
    if medium in _DISPLAY_MEDIA:
        return Channel.DISPLAY
    if medium in _EMAIL_MEDIA:
        return Channel.EMAIL
    if medium in _SOCIAL_MEDIA:
        return Channel.ORGANIC_SOCIAL
    if medium == "organic":
        return Channel.ORGANIC_SEARCH
    if medium in _REFERRAL_MEDIA:
        return Channel.REFERRAL
    query = {k.lower() for k, _ in _query(page_url)}
    if query.intersection(_SEARCH_CLICK_IDS):
        return Channel.PAID_SEARCH
    if query.intersection(_SOCIAL_CLICK_IDS):
        return Channel.PAID_SOCIAL
    if medium:
        return Channel.OTHER
    return _referrer_channel(page_url, referrer)


def _referrer_channel(page_url: str | None, referrer: str | None) -> Channel:
    host = _host(referrer)
    if not host:
        return Channel.DIRECT
    if any(engine in host for engine in _SEARCH_ENGINES):
        return Channel.ORGANIC_SEARCH
    if host in _SOCIAL_HOSTS or set(host.split(".")).intersection(_SOCIAL_SOURCES):
        return Channel.ORGANIC_SOCIAL
    own = _host(page_url)
    return Channel.DIRECT if host == own else Channel.REFERRAL


def _query(url: str | None) -> list[tuple[str, str]]:
    """The query of ``url``; none when it has none or is not a URL (``http://[`` is not)."""
    if not url or "=" not in url:
        return []
    try:
        return parse_qsl(urlsplit(url).query)
    except ValueError:
        return []


def _host(url: str | None) -> str:
    """The host name of ``url``; empty when it has none or is not a URL."""
    try:
        return (urlsplit(url).hostname or "") if url else ""
    except ValueError:
        return ""


def _page(
    context: dict[str, JsonValue], properties: dict[str, JsonValue]
) -> tuple[str | None, str | None]:
    page = context.get("page")
    page_dict: dict[str, JsonValue] = page if isinstance(page, dict) else {}
    url = properties.get("url") or page_dict.get("url")
    referrer = properties.get("referrer") or page_dict.get("referrer")
    return (
        str(url) if isinstance(url, str) else None,
        str(referrer) if isinstance(referrer, str) else None,
    )


def prospect_key(user_id: str | None, anonymous_id: str | None, links: dict[str, str]) -> str:
    """userId, else the user an identify linked the anonymous id to, else the anonymous id."""
    if user_id:
        return user_id
    assert anonymous_id is not None  # the payload models require one of the two
    return links.get(anonymous_id, anonymous_id)


def touchpoint(
    call: Track | Page, message_id: str, received: Received, links: dict[str, str]
) -> TouchpointEvent:
    url, referrer = _page(call.context, call.properties)
    campaign = campaign_of(call.context, url)
    when, clamped = occurred_at(call.timestamp, received)
    context = dict(call.context)
    if clamped and call.timestamp is not None:
        context["trayecto_clamped_timestamp"] = call.timestamp.isoformat()
    if isinstance(call, Track):
        kind, name = touchpoint_type(call.event), call.event
    else:
        kind, name = TouchpointType.PAGE_VIEW, call.name or url or "page"
    emotion = call.properties.get("emotion")
    # Built without re-validation: every input was validated by the Segment models
    # (same limits as the contract) and the rest is computed here; a unit test checks
    # that what this returns round-trips through the contract's validation.
    return construct(
        TouchpointEvent,
        {
            "schema_version": TouchpointEvent.SCHEMA_VERSION,
            "event_id": event_id(received.source_id, message_id),
            "prospect_id": prospect_key(call.user_id, call.anonymous_id, links),
            "kind": "touchpoint",
            "type": kind,
            "name": name[:200],
            "channel": channel_of(campaign, url, referrer, call.properties.get("channel")),
            "occurred_at": when,
            "received_at": received.at,
            "source": received.source,
            "message_id": message_id,
            "user_id": call.user_id,
            "anonymous_id": call.anonymous_id,
            "campaign": campaign,
            "properties": call.properties,
            "context": context,
            "emotion": (
                Emotion(emotion) if isinstance(emotion, str) and emotion in _EMOTIONS else None
            ),
        },
        _COMPUTED,
    )


_COMPUTED = frozenset(TouchpointEvent.model_fields) - {"schema_version", "kind"}
"""A touchpoint's ``model_fields_set``: all but the two fields that hold their defaults."""


def identify(
    call: Identify, message_id: str, received: Received, links: dict[str, str]
) -> IdentifyEvent:
    when, _ = occurred_at(call.timestamp, received)
    return IdentifyEvent(
        event_id=event_id(received.source_id, message_id),
        prospect_id=prospect_key(call.user_id, call.anonymous_id, links),
        occurred_at=when,
        received_at=received.at,
        source=received.source,
        message_id=message_id,
        user_id=call.user_id,
        anonymous_id=call.anonymous_id,
        traits=call.traits,
    )


def alias(call: Alias, message_id: str, received: Received) -> IdentifyEvent:
    """An alias is an identify without traits: previousId now belongs to userId."""
    when, _ = occurred_at(call.timestamp, received)
    return IdentifyEvent(
        event_id=event_id(received.source_id, message_id),
        prospect_id=call.user_id,
        occurred_at=when,
        received_at=received.at,
        source=received.source,
        message_id=message_id,
        user_id=call.user_id,
        anonymous_id=call.previous_id,
    )
