"""STARTTLS and implicit TLS (smtps://) to an SMTP server with its own certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from shared.contract import DeliveryOutcome, DeliveryStatus
from shared.settings import Settings

from .smtp_server import SmtpServer
from .test_smtp_auth import _outcomes_with


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate: apt-get install openssl"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


async def test_starttls(
    settings: Settings, fresh_database: str, certificate: tuple[Path, ssl.SSLContext]
) -> None:
    cert, context = certificate
    with SmtpServer(starttls=context) as smtp:
        url = f"smtp://127.0.0.1:{smtp.port}?starttls=1&cafile={cert}"
        outcomes = await _outcomes_with(settings, fresh_database, url)
        assert [o.status for o in outcomes if isinstance(o, DeliveryOutcome)] == [
            DeliveryStatus.SENT
        ]
        assert smtp.inbox.encrypted == [True]


async def test_implicit_tls(
    settings: Settings, fresh_database: str, certificate: tuple[Path, ssl.SSLContext]
) -> None:
    cert, context = certificate
    with SmtpServer(implicit_tls=context) as smtp:
        url = f"smtps://127.0.0.1:{smtp.port}?cafile={cert}"
        outcomes = await _outcomes_with(settings, fresh_database, url)
        assert [o.status for o in outcomes if isinstance(o, DeliveryOutcome)] == [
            DeliveryStatus.SENT
        ]
        assert smtp.inbox.encrypted == [True]


async def test_an_untrusted_certificate_is_refused(
    settings: Settings, fresh_database: str, certificate: tuple[Path, ssl.SSLContext]
) -> None:
    _, context = certificate
    with SmtpServer(starttls=context) as smtp:
        url = f"smtp://127.0.0.1:{smtp.port}?starttls=1"  # no cafile: the system CAs only
        outcomes = [
            o
            for o in await _outcomes_with(settings, fresh_database, url)
            if isinstance(o, DeliveryOutcome)
        ]
        assert [o.status for o in outcomes] == [DeliveryStatus.FAILED]  # one attempt allowed
        assert smtp.inbox.messages == []
