import re
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from pydantic import ValidationError

from shared.contract import (
    MESSAGE_TYPES,
    TOPIC_MESSAGES,
    Campaign,
    Channel,
    ContentType,
    DeliveryCommand,
    DeliveryOutcome,
    DeliveryStatus,
    IdentifyEvent,
    StageTransition,
    TimerFired,
    TouchpointEvent,
    TouchpointType,
    WireMessage,
)
from shared.kafka import EVENT_ID_HEADER, TYPE_HEADER, VERSION_HEADER, decode, encode
from shared.kafka.codec import UnknownMessageType
from shared.topics import ALL_TOPICS, PROSPECT_TOPICS

MADRID = timezone(timedelta(hours=1))
AT = datetime(2026, 3, 2, 10, 30, tzinfo=MADRID)


def samples() -> list[WireMessage]:
    run_id, command_id = uuid4(), uuid4()
    return [
        TouchpointEvent(
            prospect_id="p-1",
            type=TouchpointType.AD_CLICK,
            name="Ad Clicked",
            channel=Channel.PAID_SEARCH,
            occurred_at=AT,
            source="google-ads",
            message_id="m-1",
            anonymous_id="anon-1",
            campaign=Campaign(source="google", medium="cpc", name="primavera"),
            properties={"url": "https://example.com/?q=ñ", "depth": 0.5, "tags": ["a", "b"]},
        ),
        IdentifyEvent(
            prospect_id="p-1",
            occurred_at=AT,
            source="web",
            user_id="u-1",
            anonymous_id="anon-1",
            traits={"email": "ana@example.com", "company_size": 120},
        ),
        DeliveryCommand(
            prospect_id="p-1",
            command_id=command_id,
            journey="it-manager",
            journey_version=3,
            step="send_video",
            content="demo-video",
            content_type=ContentType.VIDEO,
            channel=Channel.EMAIL,
            variant="B",
            recipient={"email": "ana@example.com"},
        ),
        DeliveryOutcome(
            prospect_id="p-1",
            command_id=command_id,
            status=DeliveryStatus.RETRIED,
            channel=Channel.EMAIL,
            content="demo-video",
            content_type=ContentType.VIDEO,
            attempt=2,
            reason="451 try again later",
        ),
        StageTransition(
            prospect_id="p-1",
            journey="it-manager",
            journey_version=3,
            persona="it-manager",
            run_id=run_id,
            from_stage="visitor",
            to_stage="contact",
            reason="goal",
            occurred_at=AT,
        ),
        TimerFired(
            prospect_id="p-1",
            timer_id=uuid4(),
            run_id=run_id,
            journey="it-manager",
            journey_version=3,
            step="wait_3_days",
            due_at=AT,
        ),
    ]


@pytest.mark.parametrize("message", samples(), ids=lambda m: type(m).__name__)
def test_record_round_trip_keeps_key_headers_and_fields(message: WireMessage) -> None:
    record = encode(message)
    assert record.key == b"p-1"
    assert record.headers[TYPE_HEADER] == message.model_dump()["kind"]
    assert record.headers[VERSION_HEADER] == str(type(message).SCHEMA_VERSION)
    assert record.headers[EVENT_ID_HEADER] == str(message.event_id)
    assert decode(record.value, record.headers) == message


def test_timestamps_are_normalised_to_utc() -> None:
    event = samples()[0]
    assert isinstance(event, TouchpointEvent)
    assert event.occurred_at.tzinfo == UTC
    assert event.occurred_at == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        IdentifyEvent(prospect_id="p", occurred_at=datetime(2026, 1, 1), source="web")  # noqa: DTZ001
    assert info.value.errors()[0]["loc"] == ("occurred_at",)


def test_missing_and_bad_fields_are_named() -> None:
    with pytest.raises(ValidationError) as info:
        TouchpointEvent.model_validate(
            {"prospect_id": "", "type": "teleport", "name": "x", "source": "web"}
        )
    bad = {error["loc"][0] for error in info.value.errors()}
    assert bad == {"prospect_id", "type", "occurred_at"}


def test_unknown_fields_from_newer_producers_are_ignored() -> None:
    message = samples()[1]
    record = encode(message)
    newer = record.value[:-1] + b', "added_later": 1}'
    assert decode(newer, record.headers) == message


def test_unknown_type_header_is_a_clear_error() -> None:
    record = encode(samples()[0])
    with pytest.raises(UnknownMessageType, match="trayecto-type='nope'"):
        decode(record.value, {**record.headers, TYPE_HEADER: "nope"})


def test_messages_are_immutable() -> None:
    with pytest.raises(ValidationError):
        samples()[0].prospect_id = "other"  # type: ignore[misc]


def test_every_message_type_has_a_topic_and_every_prospect_topic_a_type() -> None:
    on_topics = {model for models in TOPIC_MESSAGES.values() for model in models}
    assert on_topics == set(MESSAGE_TYPES.values())
    assert set(TOPIC_MESSAGES) == set(PROSPECT_TOPICS)
    assert len(set(ALL_TOPICS)) == len(ALL_TOPICS)
    for kind, model in MESSAGE_TYPES.items():
        assert model.model_fields["kind"].default == kind
        assert "schema_version" in model.model_fields


# ---------------------------------------------------------------- values no consumer can store


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"name": "a\x00b"}, "name: contains a NUL character"),
        ({"prospect_id": "\x00"}, "prospect_id: contains a NUL character"),
        ({"properties": {"a": [1, {"b": "\x00"}]}}, "properties.a[1].b: contains a NUL"),
        ({"properties": {"k\x00": 1}}, "'properties.k\\x00': a key contains a NUL"),
        ({"properties": {"x": float("nan")}}, "properties.x: nan is not a JSON number"),
        ({"context": {"x": [float("-inf")]}}, "context.x[0]: -inf is not a JSON number"),
        ({"campaign": Campaign(source="\x00")}, "campaign.source: contains a NUL"),
    ],
)
def test_values_postgresql_cannot_store_are_refused_naming_where(
    change: dict[str, object], named: str
) -> None:
    base = samples()[0].model_dump()
    with pytest.raises(ValidationError, match=re.escape(named)):
        TouchpointEvent.model_validate({**base, **change})


def test_json_literals_json_cannot_hold_are_refused_on_decode() -> None:
    record = encode(samples()[1])
    for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        value = record.value.replace(b'"company_size":120', b'"company_size":' + literal)
        with pytest.raises(ValidationError, match=r"traits\.company_size: .* is not a JSON number"):
            decode(value, record.headers)


def test_extreme_but_storable_values_are_kept() -> None:
    message = samples()[0]
    assert isinstance(message, TouchpointEvent)
    properties = {"big": 2**70, "max": 1e308, "escaped": "\\u0000", "sql": "'; DROP TABLE x; --"}
    extreme = message.model_copy(update={"properties": properties})
    record = encode(extreme)
    assert b"1180591620717411303424" in record.value
    assert decode(record.value, record.headers) == extreme


def test_a_schema_version_newer_than_known_is_refused() -> None:
    record = encode(samples()[2])
    for version in (b"2", b"1180591620717411303424"):
        newer = record.value.replace(b'"schema_version":1', b'"schema_version":' + version)
        with pytest.raises(ValidationError, match=r"schema_version \d+ is newer than the 1"):
            decode(newer, record.headers)


def test_a_stage_transition_of_version_1_is_still_read() -> None:
    """Version 2 added the reason ``retried``; what version-1 producers wrote still reads."""
    transition = next(m for m in samples() if isinstance(m, StageTransition))
    assert transition.schema_version == StageTransition.SCHEMA_VERSION == 2
    record = encode(transition)
    older = record.value.replace(b'"schema_version":2', b'"schema_version":1')
    assert older != record.value
    read = decode(older, {**record.headers, VERSION_HEADER: "1"})
    assert read == transition.model_copy(update={"schema_version": 1})
    with pytest.raises(ValidationError, match=r"schema_version 3 is newer than the 2"):
        decode(record.value.replace(b'"schema_version":2', b'"schema_version":3'), record.headers)


def test_a_timestamp_beyond_year_9999_in_utc_is_a_validation_error() -> None:
    record = encode(samples()[0])
    stamp = b'"occurred_at":"2026-03-02T09:30:00Z"'
    assert stamp in record.value
    for late in (b"9999-12-31T23:59:59-01:00", b"9999-12-31T20:00:00-14:00"):
        value = record.value.replace(stamp, b'"occurred_at":"' + late + b'"')
        with pytest.raises(ValidationError, match="out of range in UTC"):
            decode(value, record.headers)
