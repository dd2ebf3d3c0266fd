"""Kafka topic names. Every topic that carries prospect events is keyed by prospect id."""

from typing import Final

TOUCHPOINTS: Final = "touchpoints"
"""Normalised touchpoints and identify calls from ingest (TouchpointEvent, IdentifyEvent)."""
DELIVERY_COMMANDS: Final = "delivery.commands"
"""What the orchestrator asks delivery to send (DeliveryCommand)."""
DELIVERY_OUTCOMES: Final = "delivery.outcomes"
"""Every delivery result: sent, skipped, failed, bounced, retried (DeliveryOutcome)."""
JOURNEY_TRANSITIONS: Final = "journey.transitions"
"""Stage and step transitions of prospects, for metrics (StageTransition)."""
TIMERS_FIRED: Final = "timers.fired"
"""Durable timers that came due (TimerFired); consumed on the per-prospect path."""
TOUCHPOINTS_DLQ: Final = "touchpoints.dlq"
"""Touchpoint messages that could not be processed, with the reason in headers."""
DELIVERY_DLQ: Final = "delivery.dlq"
"""Delivery commands that failed after all retries, with the reason in headers."""

PROSPECT_TOPICS: Final = (
    TOUCHPOINTS,
    DELIVERY_COMMANDS,
    DELIVERY_OUTCOMES,
    JOURNEY_TRANSITIONS,
    TIMERS_FIRED,
)
DEAD_LETTER_TOPICS: Final = (TOUCHPOINTS_DLQ, DELIVERY_DLQ)
ALL_TOPICS: Final = PROSPECT_TOPICS + DEAD_LETTER_TOPICS
