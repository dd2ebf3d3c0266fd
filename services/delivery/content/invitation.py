"""Webinar and event invitations: when the session is, how to say it, and the ``.ics``.

The calendar file is an RFC 5545 ``METHOD:REQUEST`` with one VEVENT whose UID derives
from the command id, so a resent command updates the same calendar entry instead of
adding a second one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from icalendar import Alarm, Calendar, vCalAddress, vText
from icalendar import Event as CalendarEvent

from .model import Event, Strings

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_PLACEHOLDER = re.compile(r"\{(weekday|day|month|year|time|zone)\}")


@dataclass(frozen=True, slots=True)
class Session:
    starts_at: datetime
    ends_at: datetime


def session_of(event: Event, issued_at: datetime) -> Session:
    """The session an invitation issued at ``issued_at`` is for, in the event's zone.

    Weekly events: the first session at least ``notice_days`` after the issue time, so
    that a redelivered command computes the same session.
    """
    zone = ZoneInfo(event.timezone)
    if event.starts_at is not None:
        start = event.starts_at.astimezone(zone)
    else:
        assert event.weekly is not None  # validated: exactly one of the two
        earliest = issued_at.astimezone(zone) + timedelta(days=event.weekly.notice_days)
        hour, minute = (int(part) for part in event.weekly.time.split(":"))
        ahead = (WEEKDAYS.index(event.weekly.day) - earliest.weekday()) % 7
        day: date = earliest.date() + timedelta(days=ahead)
        start = datetime.combine(day, time(hour, minute), tzinfo=zone)
        if start < earliest:
            start = datetime.combine(day + timedelta(days=7), time(hour, minute), tzinfo=zone)
    # Absolute duration, also across a daylight-saving change.
    end = (start.astimezone(UTC) + event.duration).astimezone(zone)
    return Session(start, end)


def describe_when(strings: Strings, start: datetime) -> str:
    """The start as the reader's language writes it, e.g. ``jueves, 3 de diciembre...``."""
    zone = str(start.tzinfo).rpartition("/")[2].replace("_", " ")
    values = {
        "weekday": strings.weekdays[start.weekday()],
        "day": str(start.day),
        "month": strings.months[start.month - 1],
        "year": str(start.year),
        "time": start.strftime("%H:%M"),
        "zone": zone,
    }
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], strings.date_format)


@dataclass(frozen=True, slots=True)
class Invitation:
    uid: str
    summary: str
    description: str
    location: str
    url: str | None
    organizer_name: str
    organizer_email: str
    attendee_name: str
    attendee_email: str
    language: str


def invitation_ics(invitation: Invitation, session: Session, now: datetime) -> bytes:
    """The ``.ics`` of one invitation (METHOD:REQUEST, VTIMEZONE included)."""
    calendar = Calendar()
    calendar.add("prodid", "-//Trayecto//Delivery//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "REQUEST")
    event = CalendarEvent()
    event.add("uid", invitation.uid)
    event.add("dtstamp", now.astimezone(UTC))
    event.add("dtstart", session.starts_at)
    event.add("dtend", session.ends_at)
    event.add("summary", invitation.summary, parameters={"LANGUAGE": invitation.language})
    event.add("description", invitation.description)
    event.add("location", invitation.location)
    if invitation.url:
        event.add("url", invitation.url)
    event.add("sequence", 0)
    event.add("status", "CONFIRMED")
    event.add("transp", "OPAQUE")
    event.add("organizer", _address(invitation.organizer_email, invitation.organizer_name))
    attendee = _address(invitation.attendee_email, invitation.attendee_name)
    # Registration goes through the tracked link, not through calendar replies.
    attendee.params.update(
        {"CUTYPE": "INDIVIDUAL", "ROLE": "REQ-PARTICIPANT", "PARTSTAT": "NEEDS-ACTION"}
    )
    attendee.params["RSVP"] = "FALSE"
    event.add("attendee", attendee)
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", invitation.summary)
    alarm.add("trigger", timedelta(minutes=-15))
    event.add_component(alarm)
    calendar.add_component(event)
    # Only the rules around the session: the zone's full history is kilobytes of RDATEs.
    calendar.add_missing_timezones(
        first_date=session.starts_at.date() - timedelta(days=366),
        last_date=session.ends_at.date() + timedelta(days=366),
    )
    ics: bytes = calendar.to_ical()
    return ics


def _address(email: str, name: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    # Parameter values cannot hold double quotes (RFC 5545 3.2); nor should names.
    cn = " ".join(name.replace('"', "").split())
    if cn:
        address.params["CN"] = vText(cn)
    return address
