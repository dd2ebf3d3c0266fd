"""What rendering produces: an email ready for SMTP, or a JSON payload for webhooks."""

from __future__ import annotations

import email.policy
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.encoders import encode_base64
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import formataddr
from typing import Any, NamedTuple

from pydantic import JsonValue

MAX_LINE = 998
"""RFC 5322 2.1.1: the longest line a message may have, without CRLF."""
POLICY = email.policy.compat32.clone(max_line_length=MAX_LINE)
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable text parts; quoted-printable keeps lines short


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

    def to_email_message(self, sender: str) -> Message:
        """multipart/alternative (text, then HTML), inside multipart/mixed with attachments.

        Built with the email package's MIME classes and its compat32 policy (lines up to
        998 characters, so a long ``List-Unsubscribe`` URL stays on one line): the same
        message as :class:`email.message.EmailMessage` would give, in a third of the time.
        """
        message: Message = MIMEMultipart("alternative", policy=POLICY)
        message.attach(_text_part(self.text, "plain"))
        message.attach(_text_part(self.html, "html"))
        if self.attachments:
            alternative, message = message, MIMEMultipart("mixed", policy=POLICY)
            message.attach(alternative)
            for attachment in self.attachments:
                message.attach(_attachment(attachment))
        message["From"] = sender
        message["To"] = formataddr((self.to.display_name, self.to.addr_spec), "utf-8")
        message["Subject"] = _text_header(self.subject)
        for name, value in self.headers.items():
            message[name] = _text_header(value)
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


def _text_header(value: str) -> str:
    """ASCII as it is; anything else as RFC 2047 encoded words in UTF-8."""
    return value if value.isascii() else Header(value, "utf-8").encode(maxlinelen=76)


def _text_part(text: str, subtype: str) -> Message:
    part = MIMENonMultipart("text", subtype, policy=POLICY, charset="utf-8")
    part.set_payload(text, _UTF8)
    return part


def _attachment(attachment: Attachment) -> Message:
    media, params = _split(attachment.content_type)
    maintype, _, subtype = media.partition("/")
    part = MIMEBase(maintype, subtype, policy=POLICY, **params)
    part.set_payload(attachment.data)
    encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
    return part


def _split(content_type: str) -> tuple[str, dict[str, str]]:
    media, *rest = (part.strip() for part in content_type.split(";"))
    params = {}
    for part in rest:
        key, _, value = part.partition("=")
        if key:
            params[key.strip().lower()] = value.strip().strip('"')
    return media.lower(), params
