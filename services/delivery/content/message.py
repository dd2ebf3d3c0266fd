"""What rendering produces: an email ready for SMTP, or a JSON payload for webhooks."""

from __future__ import annotations

import email.policy
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import Policy
from typing import Any, NamedTuple

from pydantic import JsonValue

MAX_LINE = 998
"""RFC 5322 2.1.1: the longest line a message may have, without CRLF."""


class Attachment(NamedTuple):
    filename: str
    content_type: str
    """Full media type with parameters, e.g. ``text/calendar; method=REQUEST``."""
    data: bytes


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """One email: both parts, its headers and attachments, for one recipient."""

    to: Address
    subject: str
    html: str
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)
    """Message-ID, Date, List-Unsubscribe, List-Unsubscribe-Post and Trayecto's own."""
    attachments: tuple[Attachment, ...] = ()

    def to_email_message(self, sender: str) -> EmailMessage:
        """multipart/alternative (text, then HTML), inside multipart/mixed with attachments."""
        message = EmailMessage(policy=email.policy.default)
        message["From"] = sender
        message["To"] = self.to
        message["Subject"] = self.subject
        for name, value in self.headers.items():
            message[name] = _header(name, value)
        message.set_content(self.text, subtype="plain", charset="utf-8")
        message.add_alternative(self.html, subtype="html", charset="utf-8")
        for attachment in self.attachments:
            media, params = _split(attachment.content_type)
            maintype, _, subtype = media.partition("/")
            message.add_attachment(
                attachment.data,
                maintype=maintype,
                subtype=subtype,
                filename=attachment.filename,
                params=params,
            )
        return message


@dataclass(frozen=True, slots=True)
class RenderedPayload:
    """Content for the webhook channel (SMS gateways, social schedulers, CRMs)."""

    command_id: str
    prospect: str
    content: str
    content_type: str
    channel: str
    journey: str
    journey_version: int
    step: str
    locale: str
    variant: str | None
    title: str
    text: str
    url: str | None
    recipient: Mapping[str, JsonValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body, field by field."""
        return {
            "command_id": self.command_id,
            "prospect": self.prospect,
            "content": self.content,
            "content_type": self.content_type,
            "channel": self.channel,
            "journey": self.journey,
            "journey_version": self.journey_version,
            "step": self.step,
            "locale": self.locale,
            "variant": self.variant,
            "title": self.title,
            "text": self.text,
            "url": self.url,
            "recipient": dict(self.recipient),
        }


class _Unfolded(str):
    """A header value kept on one line when the message is flattened.

    Python 3.11's email package folds any token longer than a line into RFC 2047
    encoded words, whatever the generator's policy; that would break the URL of
    ``List-Unsubscribe``. RFC 5322 allows lines up to 998 characters.
    """

    name: str

    def __new__(cls, name: str, value: str) -> _Unfolded:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


def _header(name: str, value: str) -> str:
    line = f"{name}: {value}"
    if len(line) > 78 and len(line) <= MAX_LINE and line.isascii() and line.isprintable():
        return _Unfolded(name, value)
    return value


def _split(content_type: str) -> tuple[str, dict[str, str]]:
    media, *rest = (part.strip() for part in content_type.split(";"))
    params = {}
    for part in rest:
        key, _, value = part.partition("=")
        if key:
            params[key.strip().lower()] = value.strip().strip('"')
    return media.lower(), params
