"""Time in the prospect's own zone: local times of day, quiet hours, frequency caps.

Every function takes ``now`` (an aware datetime) and returns aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..journey.model import FrequencyCap, Policies, QuietHours

MAX_SENDS_KEPT = 100
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def zone_of(traits: Mapping[str, Any], policies: Policies) -> ZoneInfo:
    """The prospect's zone: the trait ``policies.timezone_trait``, else the journey's
    ``default_timezone``; a name that is not an IANA zone counts as missing."""
    for name in (traits.get(policies.timezone_trait), policies.default_timezone):
        if isinstance(name, str) and name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def clock(text: str) -> time:
    """``"21:30"`` → 21:30."""
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def next_local(now: datetime, zone: ZoneInfo, at: time, days: Collection[str] = ()) -> datetime:
    """The first moment after ``now`` when the local clock shows ``at`` (on one of ``days``)."""
    today = now.astimezone(zone).date()
    for offset in range(8):
        day = today + timedelta(days=offset)
        moment = datetime.combine(day, at, tzinfo=zone).astimezone(UTC)
        if moment > now and (not days or DAYS[day.weekday()] in days):
            return moment
    raise AssertionError("every weekday comes within a week")


def quiet_until(now: datetime, zone: ZoneInfo, quiet: QuietHours) -> datetime | None:
    """When the quiet window the prospect is in ends; None outside it.

    The window runs from ``start`` (included) to ``end`` (excluded), across midnight when
    ``start`` is later than ``end``; equal times mean no window.
    """
    start, end = clock(quiet.start), clock(quiet.end)
    local = now.astimezone(zone).time().replace(tzinfo=None)
    inside = start <= local < end if start <= end else (local >= start or local < end)
    return next_local(now, zone, end) if inside else None


def capped_until(now: datetime, sends: Sequence[datetime], cap: FrequencyCap) -> datetime | None:
    """When a send is allowed again under ``cap``; None when it is allowed now."""
    recent = sorted(s for s in sends if s > now - cap.per)
    if len(recent) < cap.max_sends:
        return None
    # Allowed once all but max_sends - 1 of the recent sends have left the window.
    return recent[len(recent) - cap.max_sends] + cap.per


def prune_sends(sends: Sequence[datetime], now: datetime, window: timedelta) -> list[datetime]:
    """The sends a frequency cap can still see: within ``window``, at most MAX_SENDS_KEPT."""
    return sorted(s for s in sends if s > now - window)[-MAX_SENDS_KEPT:]
