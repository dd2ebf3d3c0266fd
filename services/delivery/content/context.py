"""The variables copy strings and templates see: recipient, params and the item's facts.

Recipient fields and params are passed as data only (the HTML templates escape them);
nothing a prospect typed is ever compiled as a template.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import JsonValue

from shared.contract import DeliveryCommand
from shared.contract.enums import Channel
from shared.settings import Settings

from .catalogue import FILES_DIR, Catalogue, Resolved
from .invitation import Session, describe_when, session_of
from .links import Links


@dataclass(frozen=True, slots=True)
class Facts:
    """What the item is about, for this command."""

    primary: str | None
    """The main link: a tracking link (video page, download, registration) or the
    item's own URL in this locale (click-tracked where it is used)."""
    video: dict[str, Any] | None = None
    pdf: dict[str, Any] | None = None
    event: dict[str, Any] | None = None
    session: Session | None = None


def facts_of(
    resolved: Resolved,
    catalogue: Catalogue,
    settings: Settings,
    command: DeliveryCommand,
    links: Links,
) -> Facts:
    item, text = resolved.item, resolved.text
    if item.video is not None:
        video = item.video
        url = f"{files_base(settings)}/{video.file}" if video.file else video.video_url
        return Facts(
            primary=links.link("v", url, Channel.VIDEO),
            video={
                "duration": video.duration,
                "minutes": max(1, round(video.duration / 60)),
                "poster": video.poster,
            },
        )
    if item.pdf is not None:
        file = text.file or item.pdf.file
        url = f"{files_base(settings)}/{file}" if file else item.pdf.url
        return Facts(primary=links.link("d", url), pdf={"pages": item.pdf.pages, "url": url})
    if item.event is not None:
        event = item.event
        # The issue time, not the send time: a retried command names the same session.
        session = session_of(event, command.issued_at)
        join = links.link("w/attend", event.join_url, Channel.WEBINAR) if event.join_url else None
        return Facts(
            primary=links.link("w/register", event.register_url),
            event={
                "title": event.title,
                "when": describe_when(catalogue.strings_for(resolved.locale), session.starts_at),
                "starts_at": session.starts_at.isoformat(),
                "ends_at": session.ends_at.isoformat(),
                "minutes": int(event.duration.total_seconds() // 60),
                "length": _length(event.duration),
                "location": event.location,
                "organizer": event.organizer.name,
                "join": join,
            },
            session=session,
        )
    social = item.social.url if item.social else None
    return Facts(primary=text.url or item.url or social)


def files_base(settings: Settings) -> str:
    """Where the files items name are served from: ``TRAYECTO_CONTENT_BASE_URL``, else
    ingest's ``/content/files`` (the content store directory)."""
    if settings.content_base_url:
        return settings.content_base_url.rstrip("/")
    return f"{settings.public_url.rstrip('/')}/content/{FILES_DIR}"


def copy_context(
    resolved: Resolved, catalogue: Catalogue, command: DeliveryCommand, facts: Facts
) -> dict[str, Any]:
    """The variables of copy strings; templates get these and the rendered copy."""
    recipient = command.recipient
    first = text_of(recipient.get("first_name")) or text_of(recipient.get("name")).partition(" ")[0]
    name = text_of(recipient.get("name")) or " ".join(
        text_of(recipient.get(k)) for k in ("first_name", "last_name") if recipient.get(k)
    )
    item = resolved.item
    return {
        "locale": resolved.locale,
        "brand": catalogue.brand.model_dump(),
        "recipient": dict(recipient),
        "first_name": first,
        "name": name,
        "company": text_of(recipient.get("company")),
        "email": text_of(recipient.get("email")),
        "params": {**item.params, **command.params},
        "item": {"id": item.id, "type": item.type.value, "title": item.title},
        "variant": command.variant,
        "video": facts.video,
        "pdf": facts.pdf,
        "event": facts.event,
    }


def _length(duration: timedelta) -> str:
    """``45 min``, ``1 h``, ``2 h 30 min``."""
    hours, minutes = divmod(int(duration.total_seconds() // 60), 60)
    return " ".join(([f"{hours} h"] if hours else []) + ([f"{minutes} min"] if minutes else []))


def text_of(value: JsonValue | None) -> str:
    return value.strip() if isinstance(value, str) else ""


def one_line(value: str) -> str:
    """Header-safe: no line breaks or other control characters."""
    if not value.isprintable():
        value = "".join(c if c.isprintable() else " " for c in value)
    return " ".join(value.split())
