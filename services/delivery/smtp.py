"""Handing one message to the SMTP server, with the hand-off point made explicit.

The message is the server's only after its ``250`` answer to DATA. Everything before
DATA (connect, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO) can fail or be interrupted
without a hand-off; the caller records the moment DATA starts (``on_handoff``) so a
crash before it is safely retried and a crash during it is never sent twice.
"""

from __future__ import annotations

import email.message
import email.utils
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib


@dataclass(frozen=True, slots=True)
class SmtpServer:
    hostname: str
    port: int
    use_tls: bool
    start_tls: bool | None
    username: str | None
    password: str | None
    cafile: str | None = None

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """``smtp://[user:pass@]host:port[?starttls=1]`` or ``smtps://`` (implicit TLS).

        ``cafile=/path/ca.pem`` trusts a private CA (a self-signed relay) besides the system's.
        """
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        starttls = query.get("starttls", [""])[0].lower()
        return cls(
            hostname=parts.hostname or "127.0.0.1",
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            use_tls=parts.scheme == "smtps",
            start_tls=True if starttls in {"1", "true", "yes"} else None,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            cafile=query.get("cafile", [None])[0],
        )


class TransientFailure(Exception):
    """Worth retrying later: 4xx answers, timeouts, refused or dropped connections."""


class InDoubt(Exception):
    """The connection broke during DATA: the server may or may not have the message."""


class PermanentFailure(Exception):
    """Not worth retrying: 5xx answers. ``bounced`` when the address itself is refused."""

    def __init__(self, message: str, *, bounced: bool) -> None:
        super().__init__(message)
        self.bounced = bounced


async def hand_off(
    server: SmtpServer,
    message: email.message.EmailMessage,
    on_handoff: Callable[[], Awaitable[None]],
    timeout_s: float = 30.0,
) -> str:
    """Send one message; returns the server's answer to DATA. Raises the failures above."""
    sender = email.utils.parseaddr(str(message["From"]))[1]
    recipients = [addr for _, addr in email.utils.getaddresses(message.get_all("To", []))]
    client = aiosmtplib.SMTP(
        hostname=server.hostname,
        port=server.port,
        use_tls=server.use_tls,
        start_tls=server.start_tls,
        username=server.username,
        password=server.password,
        cert_bundle=server.cafile,
        timeout=timeout_s,
        # Named from the sender's domain: without it every connection looks up this
        # host's FQDN in a thread.
        local_hostname=sender.rpartition("@")[2] or "localhost",
    )
    handing_off = False
    try:
        await client.connect()
        await client.mail(sender)
        for recipient in recipients:
            await client.rcpt(recipient)
        await on_handoff()
        handing_off = True
        answer = await client.data(message.as_bytes())
        return f"{answer.code} {answer.message}"
    except aiosmtplib.SMTPRecipientRefused as exc:
        raise _classify(exc.code, f"recipient refused: {exc.message}", address=True) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise _classify(exc.code, exc.message, address=False) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        if handing_off:
            raise InDoubt(f"connection lost during DATA: {exc!r}") from exc
        raise TransientFailure(f"SMTP server unreachable or gone: {exc!r}") from exc
    finally:
        if client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()


def _classify(code: int, text: str, *, address: bool) -> Exception:
    if 400 <= code < 500:
        return TransientFailure(f"{code} {text}")
    # 550/551/553 on RCPT: the mailbox does not exist or is not accepted: a hard bounce.
    return PermanentFailure(f"{code} {text}", bounced=address and code in {550, 551, 553})
