"""Which message types travel on which topic."""

from __future__ import annotations

from typing import Final

from .. import topics
from .base import WireMessage
from .messages import (
    DeliveryCommand,
    DeliveryOutcome,
    IdentifyEvent,
    StageTransition,
    TimerFired,
    TouchpointEvent,
)

MESSAGE_TYPES: Final[dict[str, type[WireMessage]]] = {
    "touchpoint": TouchpointEvent,
    "identify": IdentifyEvent,
    "delivery_command": DeliveryCommand,
    "delivery_outcome": DeliveryOutcome,
    "stage_transition": StageTransition,
    "timer_fired": TimerFired,
}

TOPIC_MESSAGES: Final[dict[str, tuple[type[WireMessage], ...]]] = {
    topics.TOUCHPOINTS: (TouchpointEvent, IdentifyEvent),
    topics.DELIVERY_COMMANDS: (DeliveryCommand,),
    topics.DELIVERY_OUTCOMES: (DeliveryOutcome,),
    topics.JOURNEY_TRANSITIONS: (StageTransition,),
    topics.TIMERS_FIRED: (TimerFired,),
}


def message_type_name(message: WireMessage) -> str:
    """The ``kind`` of a message, as carried in the ``trayecto-type`` header."""
    kind = getattr(message, "kind", None)
    if not isinstance(kind, str):
        raise TypeError(f"{type(message).__name__} has no kind")
    return kind
