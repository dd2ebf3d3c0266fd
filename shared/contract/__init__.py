"""The wire contract: pydantic models of every message on every topic."""

from .base import ContractModel, WireMessage, utcnow
from .enums import Channel, ContentType, DeliveryStatus, Emotion, Stage, TouchpointType
from .messages import (
    Campaign,
    DeliveryCommand,
    DeliveryOutcome,
    IdentifyEvent,
    ProspectEvent,
    StageTransition,
    TimerFired,
    TouchpointEvent,
)
from .registry import MESSAGE_TYPES, TOPIC_MESSAGES, message_type_name

__all__ = [
    "MESSAGE_TYPES",
    "TOPIC_MESSAGES",
    "Campaign",
    "Channel",
    "ContentType",
    "ContractModel",
    "DeliveryCommand",
    "DeliveryOutcome",
    "DeliveryStatus",
    "Emotion",
    "IdentifyEvent",
    "ProspectEvent",
    "Stage",
    "StageTransition",
    "TimerFired",
    "TouchpointEvent",
    "TouchpointType",
    "WireMessage",
    "message_type_name",
    "utcnow",
]
