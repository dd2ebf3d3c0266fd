"""Common base of every message on the wire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar, Self
from uuid import UUID, uuid4

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .storable import storable, unstorable


def utcnow() -> datetime:
    return datetime.now(UTC)


class ContractModel(BaseModel):
    """Immutable, forward-compatible model: unknown fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class WireMessage(ContractModel):
    """A message on a Kafka topic.

    Fields are only ever added (with defaults), never renamed or removed; a breaking
    change bumps ``SCHEMA_VERSION`` and consumers keep reading older versions (a newer
    one is refused). No string holds NUL and every number is finite: every consumer
    can store every message (see ``storable``).
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = Field(default=1, ge=1, description="Version of this message schema")
    event_id: UUID = Field(default_factory=uuid4, description="Unique id, the dedupe key")
    prospect_id: str = Field(
        min_length=1, max_length=200, description="Partition key: the prospect this is about"
    )

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        # A newer version is a breaking change this code cannot read: refusing it sends
        # the record to the dead-letter topic instead of misreading it.
        if value > cls.SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {value} is newer than the {cls.SCHEMA_VERSION} this reads"
            )
        return value

    @model_validator(mode="after")
    def _storable(self) -> Self:
        if not storable(self.__dict__):
            raise ValueError(unstorable(self.__dict__) or "a value cannot be stored")
        return self

    def kafka_key(self) -> bytes:
        return self.prospect_id.encode()


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:00-02:00 is in year 10000 in UTC
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from exc


# Every timestamp on the wire is normalised to UTC, so that ordering and equality never
# depend on the sender's offset.
Timestamp = Annotated[AwareDatetime, AfterValidator(_to_utc)]
