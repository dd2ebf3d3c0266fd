"""Encoding of wire messages as Kafka records: key, JSON value and headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..contract import MESSAGE_TYPES, WireMessage, message_type_name

TYPE_HEADER = "trayecto-type"
VERSION_HEADER = "trayecto-schema-version"
EVENT_ID_HEADER = "trayecto-event-id"
CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    value: bytes
    headers: dict[str, str]


def encode(message: WireMessage) -> Record:
    """The Kafka record of a message: keyed by prospect, typed by headers."""
    return Record(
        key=message.kafka_key(),
        # The bytes of model_dump_json(), without its decoding to str and encoding back.
        value=message.__pydantic_serializer__.to_json(message),
        headers={
            "content-type": CONTENT_TYPE,
            TYPE_HEADER: message_type_name(message),
            VERSION_HEADER: str(message.schema_version),
            EVENT_ID_HEADER: str(message.event_id),
        },
    )


class UnknownMessageType(ValueError):
    """The record's type header names no message of the contract."""


def decode(value: bytes, headers: Mapping[str, str]) -> WireMessage:
    """Parse a record back into its contract model (raises pydantic ValidationError)."""
    kind = headers.get(TYPE_HEADER)
    model = MESSAGE_TYPES.get(kind or "")
    if model is None:
        raise UnknownMessageType(f"header {TYPE_HEADER}={kind!r} names no known message type")
    return model.model_validate_json(value)
