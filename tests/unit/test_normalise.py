from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import JsonValue, ValidationError

from services.ingest import normalise
from services.ingest.segment import Identify, Page, Track
from shared.contract import Campaign, Channel, Emotion, TouchpointEvent, TouchpointType
from shared.kafka import encode

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
RECEIVED = normalise.Received(source="web", source_id=7, at=NOW, max_future=timedelta(minutes=5))


@pytest.mark.parametrize(
    ("medium", "source", "expected"),
    [
        ("cpc", "google", Channel.PAID_SEARCH),
        ("CPC", "bing", Channel.PAID_SEARCH),
        ("cpc", "facebook", Channel.PAID_SOCIAL),
        ("paid_social", "linkedin", Channel.PAID_SOCIAL),
        ("cpm", "instagram", Channel.PAID_SOCIAL),
        ("display", "dv360", Channel.DISPLAY),
        ("email", "newsletter", Channel.EMAIL),
        ("social", "twitter", Channel.ORGANIC_SOCIAL),
        ("organic", "google", Channel.ORGANIC_SEARCH),
        ("referral", "partner.es", Channel.REFERRAL),
        ("carrier-pigeon", "x", Channel.OTHER),
    ],
)
def test_channel_from_utm_medium(medium: str, source: str, expected: Channel) -> None:
    campaign = Campaign(medium=medium, source=source)
    assert normalise.channel_of(campaign, None, None, None) is expected


@pytest.mark.parametrize(
    ("url", "referrer", "expected"),
    [
        ("https://shop.es/?gclid=abc", None, Channel.PAID_SEARCH),
        ("https://shop.es/?msclkid=abc", None, Channel.PAID_SEARCH),
        ("https://shop.es/?ttclid=abc", None, Channel.PAID_SOCIAL),
        ("https://shop.es/", "https://www.google.es/search?q=x", Channel.ORGANIC_SEARCH),
        ("https://shop.es/", "https://duckduckgo.com/", Channel.ORGANIC_SEARCH),
        ("https://shop.es/", "https://m.facebook.com/", Channel.ORGANIC_SOCIAL),
        ("https://shop.es/", "https://t.co/xyz", Channel.ORGANIC_SOCIAL),
        ("https://shop.es/", "https://blog.example.org/post", Channel.REFERRAL),
        ("https://shop.es/a", "https://shop.es/b", Channel.DIRECT),
        ("https://shop.es/", None, Channel.DIRECT),
        (None, None, Channel.DIRECT),
    ],
)
def test_channel_without_utm(url: str | None, referrer: str | None, expected: Channel) -> None:
    assert normalise.channel_of(None, url, referrer, None) is expected


@pytest.mark.parametrize(
    ("url", "referrer"),
    [
        ("http://[?utm_medium=cpc&gclid=1", None),  # not a URL: an unclosed IPv6 bracket
        ("https://shop.es/", "http://[zz]/"),
        ("http://a]b/?utm_source=x", "https://[www.google.es/"),
    ],
)
def test_urls_that_cannot_be_parsed_attribute_nothing_and_keep_the_event(
    url: str, referrer: str | None
) -> None:
    call = Page(userId="u", properties={"url": url, "referrer": referrer})
    event = normalise.touchpoint(call, "m-1", RECEIVED, {})
    assert (event.channel, event.campaign) == (Channel.DIRECT, None)
    assert event.properties == {"url": url, "referrer": referrer}


def test_explicit_channel_property_wins_and_unknown_values_are_ignored() -> None:
    paid = Campaign(medium="cpc")
    assert normalise.channel_of(paid, None, None, "webinar") is Channel.WEBINAR
    assert normalise.channel_of(paid, None, None, "carrier-pigeon") is Channel.PAID_SEARCH


def test_campaign_from_context_else_from_page_url() -> None:
    url = "https://shop.es/?utm_source=fb&utm_medium=paid_social&utm_campaign=spring&utm_id=42"
    from_url = normalise.campaign_of({}, url)
    assert from_url == Campaign(source="fb", medium="paid_social", name="spring", campaign_id="42")
    context: dict[str, JsonValue] = {
        "campaign": {"source": "google", "medium": "cpc", "name": "brand"}
    }
    assert normalise.campaign_of(context, url) == Campaign(
        source="google", medium="cpc", name="brand", campaign_id="42"
    )
    assert normalise.campaign_of({}, "https://shop.es/") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Form Submitted", TouchpointType.FORM_SUBMITTED),
        ("form_submitted", TouchpointType.FORM_SUBMITTED),
        ("Order Completed", TouchpointType.PURCHASE),
        ("Email Link Clicked", TouchpointType.EMAIL_CLICKED),
        ("video-progress", TouchpointType.VIDEO_PROGRESS),
        ("lead_captured", TouchpointType.LEAD_CAPTURED),
        ("Something Else", TouchpointType.CUSTOM),
    ],
)
def test_touchpoint_type_from_event_name(name: str, expected: TouchpointType) -> None:
    assert normalise.touchpoint_type(name) is expected


def test_occurred_at_is_utc_and_implausible_clocks_are_clamped() -> None:
    madrid = datetime(2026, 5, 1, 13, 0, tzinfo=timezone(timedelta(hours=2)))
    when, clamped = normalise.occurred_at(madrid, RECEIVED)
    assert (when.isoformat(), clamped) == ("2026-05-01T11:00:00+00:00", False)
    assert normalise.occurred_at(None, RECEIVED) == (NOW, False)
    naive = datetime(2026, 4, 30, 10, 0)  # noqa: DTZ001 - a client sent no offset
    assert normalise.occurred_at(naive, RECEIVED) == (naive.replace(tzinfo=UTC), False)
    slightly_ahead = NOW + timedelta(minutes=4)
    assert normalise.occurred_at(slightly_ahead, RECEIVED) == (slightly_ahead, False)
    assert normalise.occurred_at(NOW + timedelta(days=3), RECEIVED) == (NOW, True)
    assert normalise.occurred_at(datetime(1, 1, 1, tzinfo=UTC), RECEIVED) == (NOW, True)


def test_event_id_is_deterministic_per_source_and_message() -> None:
    assert normalise.event_id(1, "m") == normalise.event_id(1, "m")
    assert normalise.event_id(1, "m") != normalise.event_id(2, "m")
    assert normalise.event_id(1, "m") != normalise.event_id(1, "n")


@given(st.integers(min_value=1, max_value=2**63 - 1), st.text(min_size=1, max_size=200))
def test_event_ids_are_the_uuid5_of_source_and_message(source_id: int, message_id: str) -> None:
    # Events already on the topic carry ids made this way: a retry must get the same one.
    expected = uuid.uuid5(normalise.EVENT_ID_NAMESPACE, f"{source_id}:{message_id}")
    assert normalise.event_id(source_id, message_id) == expected
    assert str(normalise.event_id(source_id, message_id)) == str(expected)


def test_touchpoint_keeps_attribution_and_clamping_evidence() -> None:
    call = Track.model_validate(
        {
            "anonymousId": "a-1",
            "event": "Feedback",
            "timestamp": "2099-01-01T00:00:00Z",
            "properties": {"emotion": "negative", "url": "https://shop.es/?gclid=1"},
        }
    )
    event = normalise.touchpoint(call, "m-1", RECEIVED, {"a-1": "user-1"})
    assert event.prospect_id == "user-1"
    assert event.anonymous_id == "a-1"
    assert event.type is TouchpointType.FEEDBACK
    assert event.emotion is Emotion.NEGATIVE
    assert event.channel is Channel.PAID_SEARCH
    assert event.occurred_at == NOW
    assert event.context["trayecto_clamped_timestamp"] == "2099-01-01T00:00:00+00:00"
    assert event.event_id == normalise.event_id(7, "m-1")


def test_page_and_identify() -> None:
    page = Page.model_validate({"userId": "u", "name": "Pricing"})
    assert normalise.touchpoint(page, "m", RECEIVED, {}).type is TouchpointType.PAGE_VIEW
    identify = Identify.model_validate({"anonymousId": "a", "userId": "u", "traits": {"x": 1}})
    event = normalise.identify(identify, "m", RECEIVED, {})
    assert (event.prospect_id, event.anonymous_id, event.traits) == ("u", "a", {"x": 1})


@pytest.mark.parametrize(
    "body",
    [
        {"userId": "u" * 200, "event": "e" * 200, "messageId": "m" * 200},
        {"anonymousId": "a", "event": "Order Completed", "properties": {"emotion": "joy"}},
        {
            "userId": "u",
            "event": "Video Progress",
            "timestamp": "2026-05-01T13:00:00+02:00",
            "properties": {"percent": 50, "nested": {"list": [1, 2.5, None, True]}},
            "context": {"campaign": {"source": "google", "medium": "cpc"}, "page": {"url": "x"}},
        },
    ],
)
def test_touchpoints_satisfy_the_contract(body: dict[str, JsonValue]) -> None:
    event = normalise.touchpoint(Track.model_validate(body), "m-1", RECEIVED, {})
    assert TouchpointEvent.model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize("value", [213, 1.5e9, True])
def test_numeric_timestamps_are_refused_not_guessed(value: object) -> None:
    with pytest.raises(ValidationError, match="ISO-8601"):
        Track.model_validate({"userId": "u", "event": "e", "timestamp": value})


_ids = st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1, max_size=9)
_texts = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=9)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _texts
    | st.sampled_from(["positive", "negative", "email", "https://www.google.es/?q=x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)
_urls = st.sampled_from(
    [
        "https://shop.es/pricing?utm_source=fb&utm_medium=paid_social&utm_id=42",
        "https://shop.es/?gclid=1",
        "https://m.facebook.com/",
        "http://[?utm_medium=cpc",
        "https://shop.es/",
    ]
)


@st.composite
def _calls(draw: st.DrawFn) -> Track | Page:
    body: dict[str, Any] = {
        draw(st.sampled_from(["userId", "anonymousId"])): draw(_ids),
        "properties": draw(st.dictionaries(_texts, _json, max_size=3)),
        "context": draw(st.dictionaries(_texts, _json, max_size=3)),
    }
    for key, values in (
        ("url", _urls),
        ("referrer", _urls),
        ("channel", st.sampled_from(["webinar", "carrier-pigeon", 3])),
        ("emotion", st.sampled_from(["negative", "joy", None])),
    ):
        if draw(st.booleans()):
            body["properties"][key] = draw(values)
    if draw(st.booleans()):
        body["context"]["campaign"] = draw(
            st.dictionaries(st.sampled_from(["source", "medium", "name", "x"]), _json | _texts)
        )
    if draw(st.booleans()):
        moment = draw(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])))
        body["timestamp"] = moment.isoformat()
    if draw(st.booleans()):
        name = draw(st.sampled_from(["Order Completed", "Form Submitted", "x" * 200]) | _ids)
        return Track.model_validate({**body, "event": name})
    return Page.model_validate({**body, "name": draw(st.none() | _ids)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_calls(), _ids, st.dictionaries(_ids, _ids, max_size=2))
def test_touchpoints_are_what_model_construct_makes(
    call: Track | Page, message_id: str, links: dict[str, str]
) -> None:
    event = normalise.touchpoint(call, message_id, RECEIVED, links)
    given = {k: v for k, v in event.__dict__.items() if k not in ("schema_version", "kind")}
    constructed = TouchpointEvent.model_construct(**given)
    assert list(event.__dict__) == list(TouchpointEvent.model_fields)
    assert event.__getstate__() == constructed.__getstate__()
    assert event.model_fields_set == constructed.model_fields_set
    assert encode(event) == encode(constructed)  # key, value bytes and headers
    assert TouchpointEvent.model_validate_json(encode(event).value) == event
