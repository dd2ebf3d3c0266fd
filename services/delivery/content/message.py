"""What rendering produces: an email ready for SMTP, or a JSON payload for webhooks."""

from __future__ import annotations

import binascii
import email
import email.policy
import email.quoprimime
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.encoders import encode_base64
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.base import MIMEBase
from email.utils import formataddr
from functools import lru_cache
from typing import Any, NamedTuple

from pydantic import JsonValue

MAX_LINE = 998
"""RFC 5322 2.1.1: the longest line a message may have, without CRLF."""
POLICY = email.policy.compat32.clone(max_line_length=MAX_LINE)
_NL = b"\n"  # the email package's line separator; SMTP clients send CRLF
_TEXT_PART = (
    b'Content-Type: text/%s; charset="utf-8"\nMIME-Version: 1.0\n'
    b"Content-Transfer-Encoding: quoted-printable\n\n"
)
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))
_QP_LINE = 76
"""RFC 2045 6.7: the longest line of quoted-printable text."""


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

    def to_bytes(self, sender: str) -> bytes:
        """The email as handed to SMTP (``\\n`` line ends, which SMTP clients send as CRLF).

        multipart/alternative (text, then HTML), inside multipart/mixed with attachments;
        text parts in UTF-8, quoted-printable; header lines up to 998 characters, so a
        long ``List-Unsubscribe`` URL stays on one line. The structure, headers and
        encodings the email package's MIME classes give under its compat32 policy (for
        the catalogue's emails, the same bytes but for the random boundaries), written
        directly: several times faster, and sends are CPU-bound.
        """
        headers, body = _multipart(
            "alternative", [_text_part(self.text, "plain"), _text_part(self.html, "html")]
        )
        if self.attachments:
            alternative = headers + _NL + body
            attached = [_attachment(attachment) for attachment in self.attachments]
            headers, body = _multipart("mixed", [alternative, *attached])
        lines = [
            headers,
            _header("From", sender),
            _header("To", formataddr((self.to.display_name, self.to.addr_spec), "utf-8")),
            _header("Subject", _text_header(self.subject)),
        ]
        lines += [_header(name, _text_header(value)) for name, value in self.headers.items()]
        lines += [_NL, body]
        return b"".join(lines)

    def to_email_message(self, sender: str) -> Message:
        """``to_bytes`` parsed back (compat32): ``as_bytes()`` gives the same bytes."""
        return email.message_from_bytes(self.to_bytes(sender), policy=POLICY)


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
    return value if value.isascii() else _encoded_words(value)


@lru_cache(maxsize=1024)
def _encoded_words(value: str) -> str:
    # Subjects and content names repeat across recipients.
    return Header(value, "utf-8").encode(maxlinelen=76)


def _header(name: str, value: str) -> bytes:
    """``Name: value`` and its line end, folded as compat32 folds it."""
    if value.isascii() and len(name) + len(value) + 2 <= MAX_LINE and value.isprintable():
        return f"{name}: {value}\n".encode("ascii")  # what folding leaves as it is
    return _folded(name, value)


@lru_cache(maxsize=1024)
def _folded(name: str, value: str) -> bytes:
    return POLICY.fold_binary(name, value)


def _text_part(text: str, subtype: str) -> bytes:
    # Line breaks as the email package reads them. binascii's quoted-printable is the
    # email package's, in C, but for where it may break a line, and for a line ending in
    # an encoded blank (=20, =09), which it may leave a few characters over RFC 2045's
    # 76: a text with such a line is encoded the email package's way.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    data = text.encode("utf-8")
    encoded = binascii.b2a_qp(data)
    if _blank_at_a_line_end(data) and max(map(len, encoded.split(b"\n"))) > _QP_LINE:
        encoded = email.quoprimime.body_encode(data.decode("latin-1")).encode("ascii")
    return _TEXT_PART % subtype.encode("ascii") + encoded


def _blank_at_a_line_end(data: bytes) -> bool:
    return b" \n" in data or b"\t\n" in data or data.endswith((b" ", b"\t"))


def _attachment(attachment: Attachment) -> bytes:
    media, params = _split(attachment.content_type)
    maintype, _, subtype = media.partition("/")
    part = MIMEBase(maintype, subtype, policy=POLICY, **params)
    part.set_payload(attachment.data)
    encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
    return part.as_bytes()


def _multipart(subtype: str, parts: list[bytes]) -> tuple[bytes, bytes]:
    """A multipart entity's headers and body, as the email package writes them;
    quoted-printable and base64 never give a line that could be a boundary."""
    boundary = _boundary()
    while any(boundary in part for part in parts):  # a nested part's: never in practice
        boundary = _boundary()
    headers = b'Content-Type: multipart/%s; boundary="%s"\nMIME-Version: 1.0\n' % (
        subtype.encode("ascii"),
        boundary,
    )
    separator = b"\n--" + boundary + b"\n"
    return headers, b"--" + boundary + _NL + separator.join(parts) + separator[:-1] + b"--\n"


def _boundary() -> bytes:
    """As the email package makes them: 15 ``=``, 19 random digits, ``==``."""
    token = random.randrange(sys.maxsize)
    return b"===============%0*d==" % (_BOUNDARY_DIGITS, token)


def _split(content_type: str) -> tuple[str, dict[str, str]]:
    media, *rest = (part.strip() for part in content_type.split(";"))
    params = {}
    for part in rest:
        key, _, value = part.partition("=")
        if key:
            params[key.strip().lower()] = value.strip().strip('"')
    return media.lower(), params
