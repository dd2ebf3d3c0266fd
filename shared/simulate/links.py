"""The tracked links in an email Trayecto delivered, by kind.

Delivery puts signed links to ingest's ``/t/...`` endpoints in the HTML part (the open
pixel, click links, the video page, the PDF download, webinar registration and join
links, one-click feedback, unsubscribe), in the text part, in the ``List-Unsubscribe``
header and, for invitations, in the ``.ics`` attachment (its URL and description).
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import html
import json
import re
import zlib
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses

_URL = re.compile(r"https?://[^\s\"'<>\\()]+")
_TRACKED = re.compile(
    r"/t/(?:(?P<kind>[ocvduf])/(?P<token>[A-Za-z0-9_.\-]+)"
    r"|w/(?P<wtoken>[A-Za-z0-9_.\-]+)/(?P<webinar>register|attend))(?:\?(?P<query>[^\s#]*))?$"
)
_EMOTION = re.compile(r"(?:^|&)emotion=(positive|neutral|negative)(?:&|$)")
_PARSER = BytesParser(policy=email.policy.default)


@dataclass(frozen=True, slots=True)
class TrackedLinks:
    """Each kind of tracked link an email holds (the first of each, clicks all)."""

    open: str | None = None
    clicks: tuple[str, ...] = ()
    video: str | None = None
    pdf: str | None = None
    register: str | None = None
    attend: str | None = None
    unsubscribe: str | None = None
    feedback: dict[str, str] = field(default_factory=dict)
    """Emotion (positive, neutral, negative) → one-click rating link."""

    def kinds(self) -> set[str]:
        """The kinds present: open, click, video, pdf, register, attend, unsubscribe, feedback."""
        single = ("open", "video", "pdf", "register", "attend", "unsubscribe")
        found = {k for k in single if getattr(self, k) is not None}
        if self.clicks:
            found.add("click")
        if self.feedback:
            found.add("feedback")
        return found


@dataclass(frozen=True, slots=True)
class ReceivedEmail:
    """One delivered email, as the simulator sees it."""

    key: str
    """The Maildir file name."""
    to: str
    subject: str
    content: str
    """Catalogue content id (``X-Trayecto-Content`` without the variant), else the subject."""
    step: str | None
    """Journey step, read (not verified) from a tracking token."""
    links: TrackedLinks


def urls_in(text: str) -> list[str]:
    """Every http(s) URL of a text, HTML entities decoded, in order of appearance."""
    return [m.rstrip(".,;") for m in _URL.findall(html.unescape(text))]


def _unfold_ics(text: str) -> str:
    """RFC 5545 unfolding and unescaping, enough to find the URLs of an ``.ics``."""
    unfolded = re.sub(r"\r?\n[ \t]", "", text)
    for escaped, plain in (("\\n", "\n"), ("\\N", "\n"), ("\\,", ","), ("\\;", ";")):
        unfolded = unfolded.replace(escaped, plain)
    return unfolded


def texts_of(message: EmailMessage) -> list[str]:
    """The text, HTML and calendar parts, decoded, plus the List-Unsubscribe header."""
    texts = [str(message.get("List-Unsubscribe", ""))]
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html", "text/calendar"):
            continue
        try:
            payload = part.get_content()
        except (LookupError, ValueError):
            continue
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
        texts.append(_unfold_ics(text) if ctype == "text/calendar" else text)
    return texts


def extract_links(message: EmailMessage) -> TrackedLinks:
    """Every tracked link of ``message`` by kind (see :class:`TrackedLinks`)."""
    found: dict[str, str] = {}
    clicks: list[str] = []
    feedback: dict[str, str] = {}
    names = {"o": "open", "v": "video", "d": "pdf", "u": "unsubscribe"}
    for text in texts_of(message):
        for url in urls_in(text):
            match = _TRACKED.search(url)
            if match is None:
                continue
            if match["webinar"]:
                found.setdefault(match["webinar"], url)
            elif match["kind"] == "c":
                if url not in clicks:
                    clicks.append(url)
            elif match["kind"] == "f":
                emotion = _EMOTION.search(match["query"] or "")
                if emotion:
                    feedback.setdefault(emotion[1], url)
            else:
                found.setdefault(names[match["kind"]], url)
    return TrackedLinks(clicks=tuple(clicks), feedback=feedback, **found)


def peek_claims(url: str) -> list[object] | None:
    """The claims list inside a tracking token, read without checking its signature."""
    match = _TRACKED.search(url)
    if match is None:
        return None
    token = match["token"] or match["wtoken"]
    compressed = token.startswith(".")
    payload = token.lstrip(".").split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        data = json.loads(zlib.decompress(raw) if compressed else raw)
    except (binascii.Error, ValueError, zlib.error):
        return None
    return data if isinstance(data, list) else None


def parse_email(key: str, data: bytes) -> ReceivedEmail | None:
    """A delivered email from its bytes; None when it has no recipient."""
    message = _PARSER.parsebytes(data)
    assert isinstance(message, EmailMessage)
    addresses = [addr for _, addr in getaddresses([str(message.get("To", ""))]) if addr]
    if not addresses:
        return None
    links = extract_links(message)
    header = str(message.get("X-Trayecto-Content", "")).split(";", 1)[0].strip()
    subject = str(message.get("Subject", ""))
    step: str | None = None
    any_link = links.open or links.unsubscribe or next(iter(links.clicks), None)
    claims = peek_claims(any_link) if any_link else None
    # Positional claims after the format number: prospect, journey, version, step, ...
    if claims and len(claims) > 4 and isinstance(claims[4], str):
        step = claims[4]
    return ReceivedEmail(key, addresses[0].lower(), subject, header or subject, step, links)
