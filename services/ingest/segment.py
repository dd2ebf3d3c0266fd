"""The Segment HTTP API payloads that ingest accepts (track, identify, page, screen, alias).

Shapes follow Segment's spec so that existing senders and SDKs work unchanged; unknown
top-level keys (``integrations``, ``sentAt``, ...) are accepted and ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from shared.contract.storable import check_storable

Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
NO_NUL = r"^[^\x00]*$"
STORABLE_REF = {"$ref": "#/components/schemas/StorableJson"}
STORABLE_OBJECT = {"type": "object", "propertyNames": {"pattern": NO_NUL}}
STORABLE_JSON: dict[str, Any] = {
    "description": "Any JSON value without the NUL character (\\u0000) in strings or keys",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": STORABLE_REF},
        {**STORABLE_OBJECT, "additionalProperties": STORABLE_REF},
    ],
}
"""The OpenAPI component of free-form values (the document adds it as ``StorableJson``)."""
# Bodies come from JSON, so every value is a JSON value already; JsonValue's own
# validation would cost a callback per value on the hottest path. One walk per field
# refuses what the wire contract refuses (NUL characters, NaN and infinite numbers),
# so that a 422 names the field instead of a consumer dead-lettering the event.
Props = Annotated[
    dict[str, Any],
    AfterValidator(check_storable),
    WithJsonSchema({**STORABLE_OBJECT, "additionalProperties": STORABLE_REF}),
]
Text = Annotated[str, AfterValidator(check_storable), Field(json_schema_extra={"pattern": NO_NUL})]


class _Call(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        json_schema_extra={
            "anyOf": [
                {"required": [key], "properties": {key: {"type": "string"}}}
                for key in ("userId", "anonymousId")
            ]
        },
    )

    user_id: Id | None = Field(None, alias="userId")
    anonymous_id: Id | None = Field(None, alias="anonymousId")
    message_id: Id | None = Field(None, alias="messageId")
    timestamp: datetime | None = None
    context: Props = Field(default_factory=dict)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_string(cls, value: object) -> object:
        # Segment sends ISO-8601 strings; a bare number is ambiguous (seconds or
        # milliseconds?) and is refused rather than guessed.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an ISO-8601 date-time string")
        return value

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _someone(self) -> _Call:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("either userId or anonymousId is required")
        return self


class Track(_Call):
    type: Literal["track"] = "track"
    event: Text = Field(min_length=1, max_length=200)
    properties: Props = Field(default_factory=dict)


class Page(_Call):
    type: Literal["page", "screen"] = "page"
    name: Text | None = Field(None, max_length=200)
    category: Text | None = Field(None, max_length=200)
    properties: Props = Field(default_factory=dict)


class Identify(_Call):
    type: Literal["identify"] = "identify"
    traits: Props = Field(default_factory=dict)


class Alias(_Call):
    """Links ``previousId`` (an anonymous id or older user id) to ``userId``."""

    type: Literal["alias"] = "alias"
    previous_id: Id = Field(alias="previousId")
    user_id: Id = Field(alias="userId")


Call = Annotated[Track | Page | Identify | Alias, Field(discriminator="type")]


class Batch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    batch: list[Call] = Field(min_length=1, max_length=2500)
    context: Props = Field(default_factory=dict)


MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
