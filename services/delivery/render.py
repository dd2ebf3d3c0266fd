"""Rendering one delivery command: catalogue item + recipient + params → message or payload.

Pure apart from the catalogue already loaded: the same command, catalogue, settings and
``now`` give the same message. Email gets a text and an HTML part, signed tracking links,
one-click unsubscribe headers and, for invitations, an ``.ics``; social posts and the
webhook channel get a JSON payload.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.utils import format_datetime
from typing import Any

from shared.contract import DeliveryCommand
from shared.contract.enums import Channel, ContentType
from shared.settings import Settings

from .content import (
    Attachment,
    Catalogue,
    Invitation,
    Links,
    RenderedMessage,
    RenderedPayload,
    RenderError,
    Resolved,
    Session,
    Where,
    invitation_ics,
    render_copy,
    render_file,
)
from .content.context import Facts, copy_context, facts_of, one_line, text_of

__all__ = ["RenderError", "RenderedMessage", "RenderedPayload", "message_id", "render"]
ICS_TYPE = "text/calendar; method=REQUEST; charset=UTF-8"
_ATOMS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_PLAIN_ADDRESS = re.compile(f"(?P<local>{_ATOMS})@(?P<domain>{_ATOMS})")
"""``local@domain``, both dot-atoms (RFC 5322 3.4.1): most addresses, valid as they are."""
_BUTTONS = {
    ContentType.VIDEO: "watch",
    ContentType.PDF: "download",
    ContentType.WEBINAR_INVITE: "reserve",
    ContentType.EVENT_INVITE: "reserve",
}


def message_id(command: DeliveryCommand) -> str:
    """``<{command_id}@trayecto>``: the same for every attempt of a command."""
    return f"<{command.command_id}@trayecto>"


def render(
    command: DeliveryCommand, catalogue: Catalogue, settings: Settings, now: datetime
) -> RenderedMessage | RenderedPayload:
    """Render ``command``; raises RenderError (unknown content, template failure, no address)."""
    resolved = catalogue.resolve(command.content, command.locale, command.variant)
    if resolved is None:
        raise RenderError("not in the catalogue", content=command.content, locale=command.locale)
    links = Links(command, settings, Where(resolved.item.id, resolved.locale))
    facts = facts_of(resolved, catalogue, settings, command, links)
    copy = _Copy(catalogue, resolved, copy_context(resolved, catalogue, command, facts))
    if resolved.item.type is ContentType.SOCIAL_POST or command.channel is Channel.WEBHOOK:
        return _payload(command, resolved, facts, links, copy)
    return _message(command, catalogue, resolved, facts, links, copy, now)


class _Copy:
    """Renders copy strings with the command's variables; failures name the field."""

    def __init__(self, catalogue: Catalogue, resolved: Resolved, context: dict[str, Any]) -> None:
        self.catalogue = catalogue
        self.context = context
        self.content, self.locale = resolved.item.id, resolved.locale

    def __call__(self, source: str, field: str) -> str:
        compiled = self.catalogue.copy(source)
        if isinstance(compiled, str):  # no template syntax: the text itself
            return compiled
        return render_copy(compiled, self.context, Where(self.content, self.locale, field))

    def optional(self, source: str | None, field: str) -> str | None:
        return None if source is None else self(source, field)


def _payload(
    command: DeliveryCommand, resolved: Resolved, facts: Facts, links: Links, copy: _Copy
) -> RenderedPayload:
    text = resolved.text
    subject = one_line(copy(text.subject, "subject"))
    return RenderedPayload(
        command_id=str(command.command_id),
        prospect=command.prospect_id,
        content=resolved.item.id,
        content_type=resolved.item.type.value,
        channel=command.channel.value,
        journey=command.journey,
        journey_version=command.journey_version,
        step=command.step,
        locale=resolved.locale,
        variant=command.variant,
        title=subject,
        text=copy.optional(text.text, "text") or subject,
        url=links.track(facts.primary) if facts.primary else None,
        recipient=dict(command.recipient),
    )


def _message(
    command: DeliveryCommand,
    catalogue: Catalogue,
    resolved: Resolved,
    facts: Facts,
    links: Links,
    copy: _Copy,
    now: datetime,
) -> RenderedMessage:
    item, text, where = resolved.item, resolved.text, Where(resolved.item.id, resolved.locale)
    to = _address(command, copy.context["name"], where)
    layout = catalogue.words_for(resolved.locale)
    words = dict(layout.fixed)
    for key, source in layout.templated:
        words[key] = render_copy(
            source, copy.context, Where(item.id, resolved.locale, f"strings.{key}")
        )
    subject = one_line(copy(text.subject, "subject"))
    button = copy(text.cta, "cta") if text.cta else words[_BUTTONS.get(item.type, "more")]
    event_title = copy.optional(text.event_title, "event_title")
    page: dict[str, Any] = {
        **copy.context,
        "subject": subject,
        "preheader": one_line(copy(text.preheader, "preheader")),
        "heading": copy.optional(text.heading, "heading") or subject,
        "greeting": words["greeting" if copy.context["first_name"] else "greeting_anonymous"],
        "body": [copy(p, f"body[{i}]") for i, p in enumerate(text.body)],
        "bullets": [copy(b, f"bullets[{i}]") for i, b in enumerate(text.bullets)],
        "highlight": copy.optional(text.highlight, "highlight"),
        "cta": {"label": button, "url": facts.primary} if facts.primary else None,
        "links": [
            {"label": copy(k.label, f"links[{i}]"), "url": k.url} for i, k in enumerate(text.links)
        ],
        "signature": copy.optional(text.signature, "signature") or words["signature"],
        "event_title": one_line(event_title or (item.event.title if item.event else "")),
        "strings": words,
        "tracking": {
            "open": links.open_pixel,
            "unsubscribe": links.unsubscribe,
            "feedback": links.feedback(),
        },
        "track": links.track,
    }
    template = resolved.template or "message"
    html = render_file(catalogue.env, f"{template}.html.j2", page, where)
    plain = render_file(catalogue.env, f"{template}.txt.j2", page, where)
    attachments: tuple[Attachment, ...] = ()
    if facts.session is not None:
        attachments = (_calendar(command, resolved, facts.session, facts, page, to, now),)
    variant = f"; variant={one_line(command.variant)}" if command.variant else ""
    headers = {
        "Message-ID": message_id(command),
        "Date": format_datetime(now),
        "List-Unsubscribe": f"<{links.unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "X-Trayecto-Command": str(command.command_id),
        "X-Trayecto-Content": item.id + variant,
    }
    return RenderedMessage(to, subject, html, plain, headers, attachments)


def _calendar(
    command: DeliveryCommand,
    resolved: Resolved,
    session: Session,
    facts: Facts,
    page: dict[str, Any],
    to: Address,
    now: datetime,
) -> Attachment:
    """The ``.ics`` of an invitation, its description the text of the email."""
    event, words = resolved.item.event, page["strings"]
    assert event is not None, "only events have a session"
    join: str | None = (facts.event or {}).get("join")
    lines = [page["heading"], "", *page["body"], ""]
    lines += [
        f"{words[key]}: {url}" for key, url in (("reserve", facts.primary), ("join", join)) if url
    ]
    invitation = Invitation(
        uid=f"{command.command_id}@trayecto",
        summary=page["event_title"],
        description="\n".join(lines),
        location=event.location,
        url=join or facts.primary,
        organizer_name=event.organizer.name,
        organizer_email=event.organizer.email,
        attendee_name=to.display_name,
        attendee_email=to.addr_spec,
        language=resolved.locale,
    )
    ics = invitation_ics(invitation, session, now)
    return Attachment(words["ics_filename"], ICS_TYPE, ics)


def _address(command: DeliveryCommand, name: str, where: Where) -> Address:
    email = text_of(command.recipient.get("email"))
    if not email:
        raise where.error("no email address")
    try:
        if plain := _PLAIN_ADDRESS.fullmatch(email):
            # What parsing it would give, without parsing it.
            return Address(one_line(name), plain["local"], plain["domain"])
        return Address(display_name=one_line(name), addr_spec=email)
    except (ValueError, MessageError) as exc:
        raise where.error(f"invalid email address {email!r}: {exc}") from exc
