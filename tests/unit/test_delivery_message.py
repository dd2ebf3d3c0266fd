"""The email bytes handed to SMTP: what the email package writes, and what a reader gets back."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.encoders import encode_base64
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import formataddr
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from services.delivery.content import Attachment, RenderedMessage, load_catalogue
from services.delivery.content.message import POLICY
from services.delivery.render import render
from services.delivery.smtp import Envelope
from shared.contract import DeliveryCommand
from shared.contract.enums import Channel, ContentType
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(ROOT / "content")
SETTINGS = Settings()
SENDER = "Trayecto <hola@trayecto.example>"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
NAMES = ["Ana", "Ana María Núñez", 'O"Brien, Jr.', "Zoë\r\nBcc: eve@example.com", "x" * 120]
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP
_BOUNDARY = re.compile(rb"={15}\d{19}==")


def _by_the_email_package(message: RenderedMessage, sender: str) -> bytes:
    """The same email built with the email package's MIME classes (compat32) and flattened."""

    def header(value: str) -> str:
        return value if value.isascii() else Header(value, "utf-8").encode(maxlinelen=76)

    def text(body: str, subtype: str) -> Message:
        part = MIMENonMultipart("text", subtype, policy=POLICY, charset="utf-8")
        part.set_payload(body, _UTF8)
        return part

    def attached(attachment: Attachment) -> Message:
        media, *rest = (piece.strip() for piece in attachment.content_type.split(";"))
        params = dict(piece.split("=", 1) for piece in rest)
        maintype, _, subtype = media.partition("/")
        part = MIMEBase(maintype, subtype, policy=POLICY, **params)
        part.set_payload(attachment.data)
        encode_base64(part)
        part.add_header("Content-Disposition", "attachment", filename=attachment.filename)
        return part

    built: Message = MIMEMultipart("alternative", policy=POLICY)
    built.attach(text(message.text, "plain"))
    built.attach(text(message.html, "html"))
    if message.attachments:
        alternative, built = built, MIMEMultipart("mixed", policy=POLICY)
        built.attach(alternative)
        for attachment in message.attachments:
            built.attach(attached(attachment))
    built["From"] = sender
    built["To"] = formataddr((message.to.display_name, message.to.addr_spec), "utf-8")
    built["Subject"] = header(message.subject)
    for name, value in message.headers.items():
        built[name] = header(value)
    return built.as_bytes()


def _same_but_boundaries(ours: bytes, theirs: bytes) -> None:
    assert len(set(_BOUNDARY.findall(ours))) == len(set(_BOUNDARY.findall(theirs)))
    assert _BOUNDARY.sub(b"B", ours) == _BOUNDARY.sub(b"B", theirs)


def _rendered(content: str, locale: str, name: str) -> RenderedMessage:
    item = CATALOGUE.items[content]
    fields: dict[str, Any] = {
        "prospect_id": "p-ana",
        "command_id": UUID(int=7),
        "journey": "j",
        "journey_version": 1,
        "step": "s",
        "content": content,
        "content_type": item.type,
        "channel": Channel.EMAIL,
        "locale": locale,
        "recipient": {"email": "ana.maria+news@example.com", "name": name, "first_name": name},
        "issued_at": NOW,
    }
    rendered = render(DeliveryCommand.model_validate(fields), CATALOGUE, SETTINGS, NOW)
    assert isinstance(rendered, RenderedMessage)
    return rendered


def _parsed(data: bytes) -> EmailMessage:
    wire = re.sub(rb"\r?\n", b"\r\n", data)  # as aiosmtplib sends DATA
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
    parsed = email.message_from_bytes(wire, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


EMAILS = sorted(i.id for i in CATALOGUE if i.type is not ContentType.SOCIAL_POST)


@pytest.mark.parametrize("content", EMAILS)
def test_every_email_is_what_the_email_package_writes(content: str) -> None:
    for locale in ("es", "en"):
        for name in NAMES:
            rendered = _rendered(content, locale, name)
            ours = rendered.to_bytes(SENDER)
            _same_but_boundaries(ours, _by_the_email_package(rendered, SENDER))
            assert email.message_from_bytes(ours, policy=POLICY).as_bytes() == ours


def _message(**changes: Any) -> RenderedMessage:
    fields: dict[str, Any] = {
        "to": Address("Ana", addr_spec="ana@example.com"),
        "subject": "Hola",
        "html": "<p>Hola</p>\n",
        "text": "Hola\n",
        "headers": {"Message-ID": "<m-1@trayecto>"},
        **changes,
    }
    return RenderedMessage(**fields)


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": "Una guía técnica de Trayecto, " * 6},  # folded encoded words
        {"subject": "A plain subject that is long enough to need folding, " * 25},
        {"subject": "tabs\tand  spaces ", "headers": {"X-Trayecto-Content": "a\tb"}},
        {"text": "líneas\r\ncon CRLF\ry CR sueltos\n", "html": "=3D . \n.\nfin"},
        {"text": "", "html": ""},
        {"text": "x" * 300 + " \n" + "ñ" * 100, "html": "trailing space \nand tab\t\n"},
        {"to": Address("Ünïcödé Name", addr_spec="ana@example.com")},
        {
            "attachments": (
                Attachment("invitación.ics", "text/calendar; method=REQUEST", b"x" * 200),
            )
        },
    ],
)
def test_odd_values_too(changes: dict[str, Any]) -> None:
    rendered = _message(**changes)
    ours = rendered.to_bytes(SENDER)
    if "\r" not in rendered.text:  # the email package keeps lone CRs as line breaks too
        _same_but_boundaries(ours, _by_the_email_package(rendered, SENDER))
    parsed = _parsed(ours)
    text, html = (
        part
        for part in parsed.walk()
        if part.get_content_maintype() == "text" and not part.is_attachment()
    )
    expected = rendered.text.replace("\r\n", "\n").replace("\r", "\n")
    assert str(text.get_content()).replace("\r\n", "\n") == expected
    assert str(html.get_content()).replace("\r\n", "\n") == rendered.html
    assert str(parsed["Subject"]) == rendered.subject


def test_the_envelope_is_the_sender_the_recipient_and_those_bytes() -> None:
    rendered = _rendered("it-welcome", "es", "Ana")
    envelope = Envelope.of(rendered, SENDER)
    assert envelope.sender == "hola@trayecto.example"
    assert envelope.recipients == ("ana.maria+news@example.com",)
    parsed = _parsed(envelope.data)
    assert parsed["Message-ID"] == rendered.headers["Message-ID"]
    assert parsed["To"].addresses[0].addr_spec == "ana.maria+news@example.com"
