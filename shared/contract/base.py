"""Common base of every message on the wire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar
from uuid import UUID, uuid4

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class ContractModel(BaseModel):
    """Immutable, forward-compatible model: unknown fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class WireMessage(ContractModel):
    """A message on a Kafka topic.

    Fields are only ever added (with defaults), never renamed or removed; a breaking
    change bumps ``SCHEMA_VERSION`` and consumers keep reading older versions.
    """

    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = Field(default=1, ge=1, description="Version of this message schema")
    event_id: UUID = Field(default_factory=uuid4, description="Unique id, the dedupe key")
    prospect_id: str = Field(
        min_length=1, max_length=200, description="Partition key: the prospect this is about"
    )

    def kafka_key(self) -> bytes:
        return self.prospect_id.encode()


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# Every timestamp on the wire is normalised to UTC, so that ordering and equality never
# depend on the sender's offset.
Timestamp = Annotated[AwareDatetime, AfterValidator(_to_utc)]
