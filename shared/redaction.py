"""Secrets out of log lines, whoever writes them.

A logging filter rewrites every record before a handler formats it: the configured
secrets (admin token, tracking keys, webhook secret, the passwords in the database and
SMTP URLs) by value, and by shape what a process never knows in clear but requests
carry: write keys and Google Ads keys (``tk_…``, ``gk_…``), bearer and basic
credentials, passwords in URLs, ``?key=`` query parameters (landing-page forms), the
token of tracking links (``/t/c/<token>``: a bearer credential for the prospect's
link) and the prospect id of the privacy endpoints (``/v1/prospects/<id>``).

:func:`install_redaction` puts the filter on the handlers of the root logger and on
uvicorn's loggers (their records do not reach the root's handlers).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

from .settings import Settings
from .tracking_keys import parse_setting

REDACTED: Final = "[redacted]"
MIN_SECRET_CHARS: Final = 6
"""Shorter configured values are not replaced as such (they would mangle unrelated
text); the patterns still catch them in URLs."""

_SEGMENT = r"[^/?#\s\"']+"
PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(rf"(/t/[a-z]/){_SEGMENT}"), rf"\g<1>{REDACTED}"),
    # An id may contain '/': the rest of the path goes too.
    (re.compile(r"(/v1/prospects/)[^?#\s\"']+"), rf"\g<1>{REDACTED}"),
    (
        re.compile(r"(?i)([?&](?:key|google_key|write_key|token|access_token)=)[^&#\s\"']*"),
        rf"\g<1>{REDACTED}",
    ),
    (re.compile(r"\b(tk|gk|ta)_[A-Za-z0-9_-]{16,}"), rf"\g<1>_{REDACTED}"),
    # A credential has a digit or a sign somewhere; prose ("basic settings") has none.
    (
        re.compile(r"(?i)\b(bearer|basic)(\s+)(?=[\w.~+/=-]*[\d_.~+/=-])[\w.~+/-]{8,}=*"),
        rf"\g<1>\g<2>{REDACTED}",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/:@\s]*:)[^@\s/]*@"), rf"\g<1>{REDACTED}@"),
    (re.compile(r"(?i)\b(password\s*[=:]\s*)[^\s&,;]+"), rf"\g<1>{REDACTED}"),
)

LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def secrets_of(settings: Settings) -> set[str]:
    """The configured secret values, as they could appear in a message."""
    found: set[str] = set(parse_setting(settings.tracking_keys.get_secret_value()))
    found.add(settings.webhook_secret.get_secret_value())
    if settings.admin_token is not None:
        found.add(settings.admin_token.get_secret_value())
    for url in (settings.database_url, settings.smtp_url):
        parts = urlsplit(url)
        passwords = [parts.password or "", *parse_qs(parts.query).get("password", [])]
        found.update(p for password in passwords for p in (password, unquote(password)))
    return {s.strip() for s in found if len(s.strip()) >= MIN_SECRET_CHARS}


class Redactor(logging.Filter):
    """Rewrites records in place; never drops one."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add_secrets(self, values: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._secrets) | {v for v in values if len(v) >= MIN_SECRET_CHARS}
            # Longest first: a secret containing another is replaced whole.
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern, replacement in PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        # Arguments one by one first: formatters such as uvicorn's access log read them.
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {
                k: self.redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format: logging reports it itself
            return True
        clean = self.redact(message)
        if clean != message and not _plain(record.args):  # inside a non-string argument
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _plain(args: object) -> bool:
    """Only strings (redacted already) and numbers: nothing else can hold a secret."""
    values = args.values() if isinstance(args, Mapping) else args
    if not isinstance(values, Iterable):
        return True
    return all(isinstance(v, str | int | float | None) for v in values)


REDACTOR: Final = Redactor()
"""The one filter of the process: secrets of every settings it was installed with."""


def install_redaction(settings: Settings) -> None:
    """Filter the root logger's handlers (as they are now) and uvicorn's loggers."""
    REDACTOR.add_secrets(secrets_of(settings))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)
    for handler in logging.getLogger().handlers:
        if REDACTOR not in handler.filters:
            handler.addFilter(REDACTOR)
