"""``TRAYECTO_TRACKING_KEYS``: the keys of tracking links and the end of their grace.

The setting is a comma-separated list of entries, the signing key first. An entry is
``KEY`` or ``KEY until WHEN``: ``WHEN`` is a UTC date ``YYYY-MM-DD`` (the key verifies
through the end of that day) or an ISO 8601 timestamp (``2026-06-30T12:00:00Z``, UTC
unless it carries an offset); from then on the key verifies nothing. The signing key
has no end. Error messages name the variable and the entry's position, never a key.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta

VARIABLE = "TRAYECTO_TRACKING_KEYS"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_WHEN = "a UTC date YYYY-MM-DD or an ISO timestamp such as 2026-06-30T12:00:00Z"


class TrackingKey(str):
    """A key, as its plain value, and ``until``: the end of its grace period.

    ``until`` is in epoch seconds, exclusive; None for a key without an end. A ``str``
    so that the tuples of keys callers already hold stay tuples of strings.
    """

    until: float | None

    def __new__(cls, value: str, until: float | None = None) -> TrackingKey:
        key = super().__new__(cls, value)
        key.until = until
        return key

    def verifies_at(self, now: float) -> bool:
        return self.until is None or now < self.until

    def entry(self) -> str:
        """The key as an entry of the setting: ``KEY`` or ``KEY until WHEN``."""
        if self.until is None:
            return str(self)
        return f"{self} until {when_of(self.until)}"


def end_of_day(day: date) -> float:
    """The instant a key ``until day`` stops verifying: the next midnight, UTC."""
    return datetime.combine(day + timedelta(days=1), time(), UTC).timestamp()


def when_of(until: float) -> str:
    """``WHEN`` for an end: a date when it falls on a UTC midnight, else a timestamp."""
    moment = datetime.fromtimestamp(until, UTC)
    if moment.time() == time():
        return (moment.date() - timedelta(days=1)).isoformat()
    return moment.isoformat().replace("+00:00", "Z")


def _end(when: str, position: int) -> float:
    try:
        if _DATE.fullmatch(when):
            return end_of_day(date.fromisoformat(when))
        if "T" in when:
            moment = datetime.fromisoformat(when)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    except (ValueError, OverflowError):
        pass
    # The text is not echoed: a misplaced entry could put a key where the date goes.
    raise ValueError(f"{VARIABLE}: entry {position}: 'until' takes {_WHEN}")


def parse_entry(entry: str, position: int = 1) -> TrackingKey:
    """One entry, ``KEY`` or ``KEY until WHEN``; ValueError naming the variable."""
    if isinstance(entry, TrackingKey):
        return entry
    parts = entry.split()
    if len(parts) == 1:
        return TrackingKey(parts[0])
    if len(parts) == 3 and parts[1].lower() == "until":
        return TrackingKey(parts[0], _end(parts[2], position))
    raise ValueError(f"{VARIABLE}: entry {position} is neither KEY nor 'KEY until YYYY-MM-DD'")


def parse_keys(entries: Iterable[str]) -> tuple[TrackingKey, ...]:
    """The keys of ``entries`` (blank ones skipped), the signing key first; maybe none."""
    present = [e for e in entries if e.strip()]
    keys = tuple(parse_entry(e, n) for n, e in enumerate(present, start=1))
    if keys and keys[0].until is not None:
        raise ValueError(
            f"{VARIABLE}: the first key signs new links and cannot have an end ('until'); "
            "put the new key first"
        )
    return keys


def parse_setting(value: str) -> tuple[TrackingKey, ...]:
    """The keys of the setting's comma-separated value."""
    return parse_keys(value.split(","))


def rotated(
    keys: Sequence[TrackingKey],
    new_key: str,
    last_day: date,
    now: float,
    retire: Collection[str] = (),
) -> tuple[TrackingKey, ...]:
    """The keys after a rotation to ``new_key``.

    The current signing key verifies through ``last_day``; the other keys stay as they
    are unless their grace has ended at ``now``; keys in ``retire`` (public ones) go.
    """
    signing, *others = keys
    kept = [TrackingKey(signing, end_of_day(last_day))] if signing not in retire else []
    kept += [k for k in others if k.verifies_at(now) and k not in retire and k != new_key]
    return (TrackingKey(new_key), *kept)
