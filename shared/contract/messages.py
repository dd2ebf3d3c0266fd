"""The wire contract: one pydantic model per Kafka message.

``kind`` tells messages that share a topic apart (``touchpoints`` carries both
touchpoints and identify calls); the Kafka header ``trayecto-type`` repeats it so that
consumers can route without parsing the body.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field, JsonValue

from .base import ContractModel, Timestamp, WireMessage, utcnow
from .enums import Channel, ContentType, DeliveryStatus, Emotion, TouchpointType

Properties = dict[str, JsonValue]


class Campaign(ContractModel):
    """Campaign attribution (UTM fields and ad platform ids)."""

    source: str | None = None
    medium: str | None = None
    name: str | None = None
    term: str | None = None
    content: str | None = None
    campaign_id: str | None = None
    ad_group_id: str | None = None
    creative_id: str | None = None


class TouchpointEvent(WireMessage):
    """One interaction between a prospect and the brand, normalised by ingest."""

    kind: Literal["touchpoint"] = "touchpoint"
    type: TouchpointType
    name: str = Field(min_length=1, max_length=200, description="Event name as sent")
    channel: Channel = Channel.OTHER
    occurred_at: Timestamp
    received_at: Timestamp = Field(default_factory=utcnow)
    source: str = Field(min_length=1, max_length=100, description="Source (write key) name")
    message_id: str | None = Field(None, max_length=200, description="Sender's idempotency key")
    user_id: str | None = Field(None, max_length=200)
    anonymous_id: str | None = Field(None, max_length=200)
    campaign: Campaign | None = None
    properties: Properties = Field(default_factory=dict)
    context: Properties = Field(default_factory=dict)
    emotion: Emotion | None = None


class IdentifyEvent(WireMessage):
    """Links an anonymous id to a known user and sets traits."""

    kind: Literal["identify"] = "identify"
    occurred_at: Timestamp
    received_at: Timestamp = Field(default_factory=utcnow)
    source: str = Field(min_length=1, max_length=100)
    message_id: str | None = Field(None, max_length=200)
    user_id: str | None = Field(None, max_length=200)
    anonymous_id: str | None = Field(None, max_length=200)
    traits: Properties = Field(default_factory=dict)


ProspectEvent = Annotated[TouchpointEvent | IdentifyEvent, Field(discriminator="kind")]
"""What the ``touchpoints`` topic carries."""


class DeliveryCommand(WireMessage):
    """Orchestrator → delivery: send one piece of content to one prospect, once."""

    kind: Literal["delivery_command"] = "delivery_command"
    command_id: UUID = Field(description="Idempotency key of the send")
    journey: str = Field(min_length=1, max_length=200)
    journey_version: int = Field(ge=1)
    step: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=200, description="Catalogue content id")
    content_type: ContentType
    channel: Channel
    variant: str | None = Field(None, max_length=100)
    locale: str = Field("es", min_length=2, max_length=20)
    recipient: Properties = Field(default_factory=dict, description="Address, name, traits")
    params: Properties = Field(default_factory=dict, description="Template parameters")
    issued_at: Timestamp = Field(default_factory=utcnow)


class DeliveryOutcome(WireMessage):
    """Delivery → everyone: what happened to one command (every attempt result)."""

    kind: Literal["delivery_outcome"] = "delivery_outcome"
    command_id: UUID
    status: DeliveryStatus
    channel: Channel
    content: str = Field(min_length=1, max_length=200)
    content_type: ContentType
    journey: str | None = None
    journey_version: int | None = None
    step: str | None = None
    variant: str | None = None
    attempt: int = Field(1, ge=1)
    reason: str | None = Field(None, max_length=2000)
    occurred_at: Timestamp = Field(default_factory=utcnow)


class StageTransition(WireMessage):
    """Orchestrator → metrics: a prospect moved in a journey (stage and/or step).

    Version 2 added the reason ``retried``, which a version-1 reader would refuse; its
    readers still read version 1.
    """

    SCHEMA_VERSION: ClassVar[int] = 2

    schema_version: int = Field(default=2, ge=1, description="Version of this message schema")
    kind: Literal["stage_transition"] = "stage_transition"
    journey: str = Field(min_length=1, max_length=200)
    journey_version: int = Field(ge=1)
    persona: str = Field(min_length=1, max_length=200)
    run_id: UUID
    from_stage: str | None = None
    to_stage: str | None = None
    step: str | None = None
    variant: str | None = None
    cause_event_id: UUID | None = None
    reason: Literal["entered", "advanced", "step", "exited", "goal", "retried"] = Field(
        "step",
        description="retried: a deferred send checked again when its timer fired (same stage)",
    )
    occurred_at: Timestamp
    run_entered_at: Timestamp | None = Field(
        None, description="When the run entered the journey (time to each stage)"
    )
    stage_entered_at: Timestamp | None = Field(
        None, description="When the run entered from_stage (time in stage)"
    )
    variants: dict[str, str] = Field(
        default_factory=dict, description="Split or send step → variant assigned so far in the run"
    )
    send_outcome: Literal["sent", "deferred", "skipped"] | None = Field(
        None, description="On a send step (reasons step and retried): what the send did"
    )
    held_by: Literal["suppressed", "quiet_hours", "frequency_cap"] | None = Field(
        None, description="Why a send was deferred or skipped: the policy that held it back"
    )
    deferred_until: Timestamp | None = Field(
        None, description="When a deferred send is checked again"
    )
    exit_reason: str | None = Field(
        None, max_length=200, description="Why the run exited (reason exited)"
    )


class TimerFired(WireMessage):
    """A durable timer came due; processed on the same per-prospect path as events."""

    kind: Literal["timer_fired"] = "timer_fired"
    timer_id: UUID
    run_id: UUID
    journey: str = Field(min_length=1, max_length=200)
    journey_version: int = Field(ge=1)
    step: str = Field(min_length=1, max_length=200)
    due_at: Timestamp
    fired_at: Timestamp = Field(default_factory=utcnow)
    payload: dict[str, Any] = Field(default_factory=dict)
