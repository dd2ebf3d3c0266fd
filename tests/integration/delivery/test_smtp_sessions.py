"""SMTP sessions kept open between sends: reused, replaced when dropped, closed when due."""

from __future__ import annotations

from email.headerregistry import Address

import pytest

from services.delivery.content import RenderedMessage
from services.delivery.smtp import Envelope, PermanentFailure, SmtpServer, SmtpSessions, Withdrawn

from .smtp_server import SmtpServer as Receiver

pytestmark = pytest.mark.integration
SENDER = "Trayecto <hola@trayecto.example>"


def _message(n: int, to: str = "ana@example.com") -> RenderedMessage:
    return RenderedMessage(
        to=Address("Ana", addr_spec=to),
        subject=f"Mensaje {n}",
        html=f"<p>Hola {n}</p>",
        text=f"Hola {n}",
        headers={"Message-ID": f"<m-{n}@trayecto>"},
    )


class _HandOffs:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


async def _send(sessions: SmtpSessions, n: int, to: str = "ana@example.com") -> str:
    marks = _HandOffs()
    answer = await sessions.hand_off(Envelope.of(_message(n, to), SENDER), marks)
    assert marks.count == 1
    return answer


def _ids(server: Receiver) -> list[str]:
    return [str(m["Message-ID"]) for m in server.inbox.messages]


def _sessions(server: Receiver, **options: float) -> SmtpSessions:
    return SmtpSessions(SmtpServer.from_url(server.url), **options)  # type: ignore[arg-type]


async def test_one_session_carries_many_messages() -> None:
    with Receiver() as server:
        sessions = _sessions(server)
        try:
            for n in range(5):
                assert (await _send(sessions, n)).startswith("250")
        finally:
            await sessions.close()
        assert _ids(server) == [f"<m-{n}@trayecto>" for n in range(5)]
        assert len(set(server.inbox.peers)) == 1


async def test_a_session_is_closed_after_max_messages() -> None:
    with Receiver() as server:
        sessions = _sessions(server, max_messages=2)
        try:
            for n in range(5):
                await _send(sessions, n)
        finally:
            await sessions.close()
        peers = server.inbox.peers
        assert len(peers) == 5
        assert peers[0] == peers[1] != peers[2] == peers[3] != peers[4]


async def test_a_session_the_server_dropped_while_idle_is_replaced() -> None:
    with Receiver() as first:
        sessions = _sessions(first)
        await _send(sessions, 1)
    # The server went away and another came on the same port: the idle session is dead.
    with Receiver(port=first.port) as second:
        try:
            assert (await _send(sessions, 2)).startswith("250")
        finally:
            await sessions.close()
    assert _ids(first) == ["<m-1@trayecto>"]
    assert _ids(second) == ["<m-2@trayecto>"]


async def test_a_refused_recipient_closes_the_session_and_the_next_send_goes_through() -> None:
    with Receiver() as server:
        server.inbox.refuse.add("nadie@example.com")
        sessions = _sessions(server)
        try:
            await _send(sessions, 1)
            marks = _HandOffs()
            refused = Envelope.of(_message(2, "nadie@example.com"), SENDER)
            with pytest.raises(PermanentFailure) as failure:
                await sessions.hand_off(refused, marks)
            assert failure.value.bounced
            assert marks.count == 0  # refused before DATA: nothing handed off
            await _send(sessions, 3)
        finally:
            await sessions.close()
        assert [str(m["Message-ID"]) for m in server.inbox.messages] == [
            "<m-1@trayecto>",
            "<m-3@trayecto>",
        ]
        assert server.inbox.peers[0] != server.inbox.peers[1]


async def test_idle_sessions_expire() -> None:
    with Receiver() as server:
        sessions = _sessions(server, max_idle_s=0.0)
        try:
            await _send(sessions, 1)
            await sessions.expire()
            await _send(sessions, 2)
        finally:
            await sessions.close()
        assert len(set(server.inbox.peers)) == 2


async def test_a_hand_off_withdrawn_before_data_resets_the_session_and_keeps_it() -> None:
    async def suppressed_meanwhile() -> None:
        raise Withdrawn("suppressed since the claim")

    with Receiver() as server:
        sessions = _sessions(server)
        try:
            await _send(sessions, 1)
            with pytest.raises(Withdrawn):
                await sessions.hand_off(Envelope.of(_message(2), SENDER), suppressed_meanwhile)
            await _send(sessions, 3)
        finally:
            await sessions.close()
        assert _ids(server) == ["<m-1@trayecto>", "<m-3@trayecto>"]
        assert server.inbox.data_attempts == 2  # no DATA for the withdrawn one
        assert len(set(server.inbox.peers)) == 1  # RSET, and the same session went on
