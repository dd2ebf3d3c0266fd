"""The lease of a delivery being handed off runs from its hand-off mark, not its claim.

A claimed delivery may wait for its channel's pace longer than the lease before its
mark. Another worker's recovery must not then report it in doubt while its DATA is
under way: the message goes once, with one outcome, ``sent``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from services.delivery.worker import DeliveryTopics, Worker
from shared.contract import ContentType, DeliveryOutcome, DeliveryStatus
from shared.settings import Settings

from .conftest import Delivery, command
from .smtp_server import Inbox, SmtpServer

pytestmark = pytest.mark.integration


@dataclass
class _RecoveringInbox(Inbox):
    """At RCPT (claimed, its mark next) the claim is made older than any lease, as a long
    wait for the channel's pace would; at DATA (marked) another worker runs recovery."""

    dsn: str = ""
    settings: Settings | None = None
    recovered: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("UPDATE deliveries SET claimed_at = now() - interval '1 hour'")
        finally:
            await conn.close()
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        assert self.settings is not None
        pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=2)
        try:
            other = Worker(self.settings, pool, _never_render, DeliveryTopics(), asyncio.Event())
            await other.recover()
            rows = await pool.fetch("SELECT status FROM deliveries")
            self.recovered += [row["status"] for row in rows]
        finally:
            await pool.close()
        return await super().handle_DATA(server, session, envelope)


def _never_render(*_: object) -> Any:
    raise AssertionError("recovery renders nothing")


@pytest.fixture
def smtp(fresh_database: str, settings: Settings) -> Iterator[SmtpServer]:
    inbox = _RecoveringInbox(
        dsn=fresh_database, settings=settings.model_copy(update={"delivery_lease_s": 60.0})
    )
    with SmtpServer(inbox=inbox) as server:
        yield server


def _outcomes(messages: Sequence[object]) -> list[DeliveryOutcome]:
    return [m for m in messages if isinstance(m, DeliveryOutcome)]


async def test_recovery_leaves_a_delivery_marked_after_a_long_wait_alone(
    delivery: Delivery,
) -> None:
    d = delivery
    inbox = d.smtp.inbox
    assert isinstance(inbox, _RecoveringInbox)
    sent = command("it-welcome", ContentType.EMAIL)
    await d.send(sent)

    async def finished() -> bool:
        return bool(
            await d.fetch(
                "SELECT 1 FROM deliveries WHERE status NOT IN ('pending', 'sending', 'handing_off')"
            )
        )

    await d.until(finished, what="the delivery to finish")
    assert inbox.recovered == ["handing_off"]  # recovery ran mid-DATA and left it alone
    rows = await d.fetch("SELECT status FROM deliveries")
    assert [row["status"] for row in rows] == ["sent"]
    assert inbox.by_message_id() == {f"<{sent.command_id}@trayecto>": 1}
    written = await d.fetch("SELECT count(*) AS n FROM outbox WHERE topic = $1", d.topics.outcomes)
    assert written[0]["n"] == 1  # one outcome, not an in-doubt failure and then a send
    outcomes = _outcomes(await d.messages(d.topics.outcomes, 1))
    assert [(o.command_id, o.status) for o in outcomes] == [(sent.command_id, DeliveryStatus.SENT)]
