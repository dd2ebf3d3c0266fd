"""The log filter that keeps secrets out of log lines."""

from __future__ import annotations

import logging
import sys

import pytest
from pydantic import SecretStr
from uvicorn.logging import AccessFormatter

from shared.redaction import REDACTED, Redactor, secrets_of
from shared.settings import Settings


@pytest.fixture
def redactor() -> Redactor:
    settings = Settings(
        database_url="postgresql://app:db%2Fpass-1234@db:5432/trayecto",
        smtp_url="smtp://mailer:smtp-pass-5678@mail:587",
        tracking_keys=SecretStr("track-key-new,track-key-old"),
        webhook_secret=SecretStr("hook-secret-99"),
        admin_token=SecretStr("admin-token-0123456789"),
    )
    found = Redactor()
    found.add_secrets(secrets_of(settings))
    return found


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('"GET /t/c/eyJ1IjoxfQ.sig-_x HTTP/1.1" 302', "eyJ1IjoxfQ.sig-_x"),
        ("/t/w/tok3n.abc/register", "tok3n.abc"),
        ("POST /v1/forms/demo?utm=x&key=tk_secret-value", "tk_secret-value"),
        ("DELETE /v1/prospects/ana@example.com", "ana@example.com"),
        ("key tk_0123456789abcdefghij used", "0123456789abcdefghij"),
        ("webhook gk_0123456789abcdefghij", "0123456789abcdefghij"),
        ("Authorization: Basic dGtfYWJjZGVmOg==", "dGtfYWJjZGVmOg=="),
        ("Authorization: Bearer eyJhbGciOi.x-1", "eyJhbGciOi.x-1"),
        ("dsn postgresql://u:guessme@h/db", "guessme"),
        ("host=db password=hunter2 user=x", "hunter2"),
        ("connecting with db/pass-1234", "db/pass-1234"),
        ("smtp AUTH smtp-pass-5678", "smtp-pass-5678"),
        ("signed with track-key-old", "track-key-old"),
        ("hook-secret-99 and admin-token-0123456789", "admin-token-0123456789"),
    ],
)
def test_secrets_are_replaced(redactor: Redactor, text: str, secret: str) -> None:
    clean = redactor.redact(text)
    assert secret not in clean
    assert REDACTED in clean


def test_prose_is_left_alone(redactor: Redactor) -> None:
    text = "basic settings loaded; bearer of news; 3 prospects at /v1/prospects"
    assert redactor.redact(text) == text


def _record(msg: str, args: tuple[object, ...] = (), exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("cannot connect to postgresql://u:db%2Fpass-1234@db/x")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("x", logging.INFO, __file__, 1, msg, args, info)


def test_uvicorn_access_records_keep_their_arguments(redactor: Redactor) -> None:
    record = _record('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET", "/t/o/abc.def", "1.1", 200))
    assert redactor.filter(record)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s").format(record)
    assert line == f"127.0.0.1:5 GET /t/o/{REDACTED} HTTP/1.1 200 OK"


def test_non_string_arguments_and_tracebacks_are_redacted(redactor: Redactor) -> None:
    class Url:
        def __str__(self) -> str:
            return "smtp://mailer:smtp-pass-5678@mail:587"

    record = _record("sending through %s", (Url(),), exc=True)
    redactor.filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert "smtp-pass-5678" not in line
    assert "db%2Fpass-1234" not in line
    assert "ValueError" in line
    assert "smtp://mailer:" in line
