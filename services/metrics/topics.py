"""The topics the metrics service counts and watches (tests give it their own)."""

from __future__ import annotations

from dataclasses import dataclass

from shared import topics


@dataclass(frozen=True, slots=True)
class MetricsTopics:
    transitions: str = topics.JOURNEY_TRANSITIONS
    touchpoints: str = topics.TOUCHPOINTS
    outcomes: str = topics.DELIVERY_OUTCOMES
    watched: tuple[str, ...] = topics.ALL_TOPICS
    """Topics whose size (``trayecto_topic_messages``) and consumer lag are exported."""

    @property
    def inputs(self) -> tuple[str, str, str]:
        return self.transitions, self.touchpoints, self.outcomes

    @classmethod
    def prefixed(cls, prefix: str) -> MetricsTopics:
        """Every topic under a prefix (isolated test runs)."""
        base = cls()
        return cls(
            transitions=prefix + base.transitions,
            touchpoints=prefix + base.touchpoints,
            outcomes=prefix + base.outcomes,
            watched=tuple(prefix + name for name in base.watched),
        )
