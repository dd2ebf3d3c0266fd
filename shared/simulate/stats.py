"""What a simulation did: prospects, events, emails, links and errors, with rates."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TOUCHPOINT_OF_LINK = {
    "open": "email_opened",
    "click": "email_clicked",
    "video_progress": "video_progress",
    "pdf": "pdf_downloaded",
    "register": "webinar_registered",
    "attend": "webinar_attended",
    "feedback": "feedback",
    "unsubscribe": "unsubscribed",
}
"""The touchpoint ingest records for each kind of link followed (``video_page``,
the GET of the video page, records nothing: only its beacons do)."""


@dataclass
class Stats:
    """Counters of one run; ``summary()`` for people, ``to_dict()`` for machines."""

    prospects: int = 0
    """How many prospects the run was asked for."""
    started: int = 0
    finished: int = 0
    personas: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    """Accepted API calls by type: the track event name, ``page`` or ``identify``."""
    touchpoints: Counter[str] = field(default_factory=Counter)
    """Touchpoints ingest recorded, by touchpoint type (API calls and tracked links)."""
    emails: int = 0
    links: Counter[str] = field(default_factory=Counter)
    """Tracked links followed successfully, by kind (beacons as ``video_progress``)."""
    errors: Counter[str] = field(default_factory=Counter)
    """Failed requests by kind: the HTTP status code or the exception's name."""
    retries: int = 0
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

    @property
    def requests(self) -> int:
        """Successful HTTP requests: API calls and links followed."""
        return sum(self.events.values()) + sum(self.links.values())

    @property
    def events_per_s(self) -> float:
        """Touchpoints and identifies ingest accepted per second."""
        recorded = sum(self.touchpoints.values()) + self.events["identify"]
        return recorded / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def prospects_per_s(self) -> float:
        return self.started / self.elapsed if self.elapsed > 0 else 0.0

    def event(self, name: str, touchpoint: str | None) -> None:
        """Count an accepted API call and the touchpoint it records (None: identify)."""
        self.events[name] += 1
        if touchpoint is not None:
            self.touchpoints[touchpoint] += 1

    def link(self, kind: str) -> None:
        """Count a tracked link followed and the touchpoint it records, if any."""
        self.links[kind] += 1
        if kind in TOUCHPOINT_OF_LINK:
            self.touchpoints[TOUCHPOINT_OF_LINK[kind]] += 1

    def to_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data (``--json``)."""
        return {
            "prospects": {
                "requested": self.prospects,
                "started": self.started,
                "finished": self.finished,
                "by_persona": dict(sorted(self.personas.items())),
            },
            "events": dict(sorted(self.events.items())),
            "touchpoints": dict(sorted(self.touchpoints.items())),
            "emails_seen": self.emails,
            "links": dict(sorted(self.links.items())),
            "errors": dict(sorted(self.errors.items())),
            "retries": self.retries,
            "elapsed_s": round(self.elapsed, 3),
            "prospects_per_s": round(self.prospects_per_s, 2),
            "events_per_s": round(self.events_per_s, 2),
        }

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) lines of the summary table."""
        prospects = f"{self.finished} finished of {self.started} started"
        rows = [
            ("prospects", f"{prospects} ({self.prospects} requested)"),
            *((f"  persona {name}", str(n)) for name, n in sorted(self.personas.items())),
            *((f"event {name}", str(n)) for name, n in sorted(self.events.items())),
            ("emails seen", str(self.emails)),
            *((f"link {kind}", str(n)) for kind, n in sorted(self.links.items())),
            *((f"touchpoint {kind}", str(n)) for kind, n in sorted(self.touchpoints.items())),
            ("errors", ", ".join(f"{k}: {n}" for k, n in sorted(self.errors.items())) or "none"),
            ("retries", str(self.retries)),
            ("elapsed", f"{self.elapsed:.1f} s"),
            ("rate", f"{self.prospects_per_s:.1f} prospects/s, {self.events_per_s:.1f} events/s"),
        ]
        return rows

    def summary(self) -> str:
        """The run in a few aligned lines of text."""
        rows = self.rows()
        width = max(len(what) for what, _ in rows)
        return "\n".join(f"{what:<{width}}  {value}" for what, value in rows)
