"""Handing messages to the SMTP server, with the hand-off point made explicit.

The message is the server's only after its ``250`` answer to DATA. Everything before
DATA (connect, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO) can fail or be interrupted
without a hand-off; the caller records the moment DATA starts (``on_handoff``) so a
crash before it is safely retried and a crash during it is never sent twice.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from .content import RenderedMessage


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message as SMTP carries it: MAIL FROM, RCPT TO and the bytes of DATA."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes

    @classmethod
    def of(cls, message: RenderedMessage, sender: str) -> Envelope:
        """``message`` from ``sender`` (``Name <address>``, as in its ``From``)."""
        return cls(_address(sender), (message.to.addr_spec,), message.to_bytes(sender))


@lru_cache(maxsize=64)
def _address(mailbox: str) -> str:
    return email.utils.parseaddr(mailbox)[1]


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


class Withdrawn(Exception):
    """Raised by ``on_handoff`` to keep a message from being handed off after all (its
    recipient was suppressed meanwhile, its claim was lost): nothing was sent, and the
    session is reset (RSET) and kept."""


class PermanentFailure(Exception):
    """Not worth retrying: 5xx answers. ``bounced`` when the address itself is refused."""

    def __init__(self, message: str, *, bounced: bool) -> None:
        super().__init__(message)
        self.bounced = bounced


class SmtpSessions:
    """SMTP sessions kept open between sends: connect, EHLO, STARTTLS and AUTH once per
    session instead of once per message.

    At most one send uses a session at a time; a session goes back to the idle set only
    after a completed send, and is closed (QUIT) after ``max_messages`` sends, after
    ``max_idle_s`` without use, or after any failure. A server may drop an idle session
    at any time: a reused session that fails before MAIL FROM is accepted is replaced by
    a new one, once; nothing was handed off by then.
    """

    def __init__(
        self,
        server: SmtpServer,
        *,
        timeout_s: float = 30.0,
        max_idle_s: float = 30.0,
        max_messages: int = 100,
    ) -> None:
        self._server = server
        self._timeout_s = timeout_s
        self._max_idle_s = max_idle_s
        self._max_messages = max_messages
        self._idle: list[_Session] = []

    async def hand_off(self, envelope: Envelope, on_handoff: Callable[[], Awaitable[None]]) -> str:
        """Send one message; returns the server's answer to DATA. Raises the failures above,
        and what ``on_handoff`` raises."""
        session: _Session | None = None
        handing_off = False
        try:
            session = await self._mail_from(envelope.sender)
            for recipient in envelope.recipients:
                await session.client.rcpt(recipient)
            await on_handoff()
            handing_off = True
            answer = await session.client.data(envelope.data)
        except Withdrawn:
            assert session is not None
            try:
                await session.client.rset()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                session.client.close()
            else:
                await self._put_back(session)
            raise
        except aiosmtplib.SMTPRecipientRefused as exc:
            raise _classify(exc.code, f"recipient refused: {exc.message}", address=True) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify(exc.code, exc.message, address=False) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if handing_off:
                raise InDoubt(f"connection lost during DATA: {exc!r}") from exc
            raise TransientFailure(f"SMTP server unreachable or gone: {exc!r}") from exc
        except BaseException:
            if session is not None:
                session.client.close()
            raise
        else:
            session.sent += 1
            await self._put_back(session)
            return f"{answer.code} {answer.message}"
        finally:
            if session is not None and not session.reusable:
                await _quit(session.client)

    async def _mail_from(self, sender: str) -> _Session:
        loop = asyncio.get_running_loop()
        while self._idle:
            session = self._idle.pop()
            if loop.time() - session.used_at > self._max_idle_s:
                await _quit(session.client)
                continue
            session.reusable = False  # until this send completes
            try:
                await session.client.mail(sender)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                session.client.close()  # dropped while idle: use a new session
                continue
            return session
        session = _Session(self._client(sender))
        try:
            await session.client.connect()
            await session.client.mail(sender)
        except BaseException:
            await _quit(session.client)
            raise
        return session

    def _client(self, sender: str) -> aiosmtplib.SMTP:
        server = self._server
        return aiosmtplib.SMTP(
            hostname=server.hostname,
            port=server.port,
            use_tls=server.use_tls,
            start_tls=server.start_tls,
            username=server.username,
            password=server.password,
            cert_bundle=server.cafile,
            timeout=self._timeout_s,
            # Named from the sender's domain: without it every connection looks up this
            # host's FQDN in a thread.
            local_hostname=sender.rpartition("@")[2] or "localhost",
        )

    async def _put_back(self, session: _Session) -> None:
        if session.sent >= self._max_messages or not session.client.is_connected:
            await _quit(session.client)
            return
        session.reusable = True
        session.used_at = asyncio.get_running_loop().time()
        self._idle.append(session)

    async def expire(self) -> None:
        """QUIT the sessions idle for longer than ``max_idle_s``."""
        now = asyncio.get_running_loop().time()
        stale = [s for s in self._idle if now - s.used_at > self._max_idle_s]
        self._idle = [s for s in self._idle if s not in stale]
        for session in stale:
            await _quit(session.client)

    async def close(self) -> None:
        """QUIT every idle session."""
        idle, self._idle = self._idle, []
        for session in idle:
            await _quit(session.client)


@dataclass(slots=True)
class _Session:
    client: aiosmtplib.SMTP
    sent: int = 0
    used_at: float = 0.0
    reusable: bool = False


async def _quit(client: aiosmtplib.SMTP) -> None:
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
