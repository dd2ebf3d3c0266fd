"""The Segment HTTP API payloads that ingest accepts (track, identify, page, screen, alias).

Shapes follow Segment's spec so that existing senders and SDKs work unchanged; unknown
top-level keys (``integrations``, ``sentAt``, ...) are accepted and ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Id = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
# Bodies come from JSON, so every value is a JSON value already; JsonValue's own
# validation would cost a callback per value on the hottest path.
Props = dict[str, Any]


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
    event: str = Field(min_length=1, max_length=200)
    properties: Props = Field(default_factory=dict)


class Page(_Call):
    type: Literal["page", "screen"] = "page"
    name: str | None = Field(None, max_length=200)
    category: str | None = Field(None, max_length=200)
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
