"""A real SMTP server (aiosmtpd) on a free port that keeps what it receives.

``answers`` scripts the first DATA answers (e.g. ["451 4.3.0 try later"]); after them
every message is accepted. ``refuse`` lists recipients answered 550 at RCPT. A test may
pass its own ``Inbox`` subclass (other answers, delays).
"""

from __future__ import annotations

import email
import email.message
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    answers: list[str] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    authenticated: list[bool] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)
    """The client address of each accepted message's connection."""
    data_attempts: int = 0
    rcpt_attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.rcpt_attempts += 1
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_attempts += 1
            if self.answers:
                return self.answers.pop(0)
            parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(parsed, email.message.EmailMessage)
            self.messages.append(parsed)
            self.authenticated.append(bool(session.authenticated))
            self.peers.append(tuple(session.peer))
            transport = getattr(server, "transport", None)
            tls = transport is not None and transport.get_extra_info("ssl_object") is not None
            self.encrypted.append(session.ssl is not None or tls)
        return "250 2.0.0 queued"

    def by_message_id(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for message in self.messages:
            counts[str(message["Message-ID"])] = counts.get(str(message["Message-ID"]), 0) + 1
        return counts


class _Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self._login = (user.encode(), password.encode())

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and (auth_data.login, auth_data.password) == self._login
        )
        return AuthResult(success=ok, handled=False)


class SmtpServer:
    def __init__(
        self,
        login: tuple[str, str] | None = None,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        inbox: Inbox | None = None,
        port: int | None = None,
    ) -> None:
        self.inbox = inbox if inbox is not None else Inbox()
        self.port = port or _free_port()
        options: dict[str, Any] = {}
        if starttls is not None:
            options.update(tls_context=starttls, require_starttls=True)
        if implicit_tls is not None:
            options.update(ssl_context=implicit_tls)
        if login is not None:
            # AUTH offered without TLS: loopback only, in tests. Whether each message came
            # from an authenticated session is recorded (``authenticated``).
            options.update(authenticator=_Authenticator(*login), auth_require_tls=False)
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **options)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()
