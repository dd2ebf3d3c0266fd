"""Facts: what a prospect did so far, kept up to date from every input.

Conditions read them with ``fact: <name>``. They are stored flat in
``ProspectState.facts`` under these names:

``count.<touchpoint type>``
    Touchpoints of that type, e.g. ``count.email_opened``, ``count.page_view``,
    ``count.video_progress``, ``count.custom``.
``count.delivery_<status>``
    Delivery outcomes of the prospect's sends with that status: ``count.delivery_sent``,
    ``count.delivery_failed``, ``count.delivery_bounced``, ``count.delivery_skipped``,
    ``count.delivery_retried``.
``video_max_percent``
    The highest ``properties.percent`` (0-100) of any ``video_progress`` touchpoint.
``video_max_percent.<content>``
    The same for one video: ``properties.content`` of the touchpoint, a catalogue
    content id (tracking links set it). At most 50 videos are kept per prospect.
``negative_feedback``
    ``feedback`` touchpoints whose emotion is ``negative``.
``score``
    The sum of the ``score`` of every ``update`` step the prospect went through.
``last_event_at``
    ISO 8601 (UTC) time of the prospect's latest touchpoint, by ``occurred_at``.

A fact that never happened is missing: ``exists: false`` holds, ``gte`` does not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from shared.contract import DeliveryOutcome, Emotion, TouchpointEvent, TouchpointType

from ..journey.conditions import Facts
from .state import Input

MAX_VIDEOS = 50
_CONTENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")


def apply_input(facts: Mapping[str, Any], event: Input) -> dict[str, Any]:
    """The facts after ``event`` (a new dict; ``facts`` is left as it was)."""
    updated = dict(facts)
    if isinstance(event, DeliveryOutcome):
        _count(updated, f"count.delivery_{event.status.value}")
    if not isinstance(event, TouchpointEvent):
        return updated
    _count(updated, f"count.{event.type.value}")
    moment = event.occurred_at.isoformat()
    if moment > str(updated.get("last_event_at", "")):  # UTC ISO strings sort by time
        updated["last_event_at"] = moment
    if event.type is TouchpointType.VIDEO_PROGRESS:
        _video(updated, event.properties)
    negative = event.emotion is Emotion.NEGATIVE or event.properties.get("emotion") == "negative"
    if event.type is TouchpointType.FEEDBACK and negative:
        _count(updated, "negative_feedback")
    return updated


def add_score(facts: Mapping[str, Any], score: float) -> dict[str, Any]:
    updated = dict(facts)
    if score:
        updated["score"] = updated.get("score", 0) + score
    return updated


def _count(facts: dict[str, Any], name: str) -> None:
    facts[name] = facts.get(name, 0) + 1


def _video(facts: dict[str, Any], properties: Mapping[str, Any]) -> None:
    percent = _percent(properties.get("percent"))
    if percent is None:
        return
    facts["video_max_percent"] = max(percent, facts.get("video_max_percent", 0))
    content = properties.get("content")
    if not isinstance(content, str) or not _CONTENT.match(content):
        return
    name = f"video_max_percent.{content}"
    videos = sum(1 for key in facts if key.startswith("video_max_percent."))
    if name in facts or videos < MAX_VIDEOS:
        facts[name] = max(percent, facts.get(name, 0))


def _percent(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number != number:  # NaN
        return None
    return min(max(number, 0.0), 100.0)


# ---------------------------------------------------------------- what conditions see


class _Both(float):
    """A fact that is a number and also holds facts below it, for dotted paths:
    ``video_max_percent`` compares as a number, ``video_max_percent.intro`` reads below."""

    children: dict[str, Any]

    def __new__(cls, value: float) -> _Both:
        made = super().__new__(cls, value)
        made.children = {}
        return made

    def __getitem__(self, key: str) -> Any:
        return self.children[key]

    def __contains__(self, key: object) -> bool:
        return key in self.children

    def __iter__(self) -> Any:
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)


Mapping.register(_Both)


def nested(facts: Mapping[str, Any]) -> dict[str, Any]:
    """Flat dotted names → the nested mappings that condition paths walk through."""
    root: dict[str, Any] = {}
    for name in sorted(facts, key=lambda n: n.count(".")):
        *parents, leaf = name.split(".")
        container: dict[str, Any] | None = root
        for part in parents:
            container = _below(container, part) if container is not None else None
        if container is not None:
            container.setdefault(leaf, facts[name])
    return root


def _below(container: dict[str, Any], part: str) -> dict[str, Any] | None:
    """The mapping under ``part`` (made if missing); None under a fact that is not a number."""
    child = container.get(part)
    if child is None:
        child = container[part] = {}
    elif isinstance(child, int | float) and not isinstance(child, bool | _Both):
        child = container[part] = _Both(child)
    if isinstance(child, _Both):
        return child.children
    return child if isinstance(child, dict) else None


def event_fields(event: Input) -> dict[str, Any]:
    """The ``field:`` subjects of a condition: the event's own fields."""
    if not isinstance(event, TouchpointEvent):
        return {"kind": event.kind}
    campaign = event.campaign
    return {
        "kind": event.kind,
        "type": event.type.value,
        "name": event.name,
        "channel": event.channel.value,
        "source": event.source,
        "emotion": event.emotion.value if event.emotion else None,
        "campaign": {
            "source": campaign.source if campaign else None,
            "medium": campaign.medium if campaign else None,
            "name": campaign.name if campaign else None,
        },
    }


def condition_facts(traits: Mapping[str, Any], facts: Mapping[str, Any], event: Input) -> Facts:
    """What conditions look at while ``event`` is processed."""
    properties = event.properties if isinstance(event, TouchpointEvent) else {}
    return Facts(
        traits=traits, facts=nested(facts), properties=properties, fields=event_fields(event)
    )


def merge_facts(older: Mapping[str, Any], newer: Mapping[str, Any]) -> dict[str, Any]:
    """One prospect's facts from two histories: counts and scores add up, maxima and
    the latest time stay the largest."""
    merged = dict(older)
    for name, value in newer.items():
        if name not in merged:
            merged[name] = value
        elif name.startswith("count.") or name in ("negative_feedback", "score"):
            merged[name] = merged[name] + value
        else:  # video_max_percent*, last_event_at: the larger wins
            merged[name] = max(merged[name], value)
    return merged
