"""The suppression list is checked at send time: one recorded after the claim, right
before the hand-off mark, still stops the send."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from shared.contract import ContentType, DeliveryOutcome, DeliveryStatus

from .conftest import Delivery, command
from .smtp_server import Inbox, SmtpServer

pytestmark = pytest.mark.integration


@dataclass
class _SuppressingInbox(Inbox):
    """Runs a statement when the RCPT of an address arrives: the command has been claimed
    and rendered by then, and its hand-off mark is next."""

    dsn: str = ""
    at_rcpt: dict[str, tuple[str, tuple[Any, ...]]] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        statement = self.at_rcpt.pop(address, None)
        if statement is not None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(statement[0], *statement[1])
            finally:
                await conn.close()
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.fixture
def smtp(fresh_database: str) -> Iterator[SmtpServer]:
    with SmtpServer(inbox=_SuppressingInbox(dsn=fresh_database)) as server:
        yield server


def _outcomes(messages: Sequence[object]) -> dict[str, DeliveryOutcome]:
    return {m.prospect_id: m for m in messages if isinstance(m, DeliveryOutcome)}


async def test_a_suppression_recorded_after_the_claim_stops_the_send(delivery: Delivery) -> None:
    d = delivery
    inbox = d.smtp.inbox
    assert isinstance(inbox, _SuppressingInbox)
    unsubscribed = command("it-welcome", ContentType.EMAIL)
    erased = command("it-welcome", ContentType.EMAIL, email="Erased@Example.com")
    allowed = command("it-welcome", ContentType.EMAIL)
    inbox.at_rcpt[f"{unsubscribed.prospect_id}@example.com"] = (
        "INSERT INTO suppressions (prospect_id, channel, reason)"
        " VALUES ($1, 'email', 'unsubscribed')",
        (unsubscribed.prospect_id,),
    )
    # An erased person's suppression: a pseudonym, and the hash of the address only.
    inbox.at_rcpt["Erased@Example.com"] = (
        "INSERT INTO suppressions (prospect_id, channel, reason, address_hash)"
        " VALUES ('erased-pseudonym', 'email', 'unsubscribed', address_hash($1))",
        (" erased@example.com",),
    )
    await d.send(unsubscribed, erased, allowed)
    outcomes = _outcomes(await d.messages(d.topics.outcomes, 3))
    for suppressed in (unsubscribed, erased):
        outcome = outcomes[suppressed.prospect_id]
        assert (outcome.status, outcome.reason) == (DeliveryStatus.SKIPPED, "unsubscribed")
    assert outcomes[allowed.prospect_id].status is DeliveryStatus.SENT
    assert inbox.at_rcpt == {}  # both suppressions went in at their RCPT
    assert inbox.by_message_id() == {f"<{allowed.command_id}@trayecto>": 1}
    assert inbox.data_attempts == 1  # no DATA for the suppressed ones
    rows = await d.fetch(
        "SELECT status FROM deliveries WHERE command_id = ANY($1::uuid[])",
        [unsubscribed.command_id, erased.command_id],
    )
    assert [r["status"] for r in rows] == ["skipped", "skipped"]


async def test_a_suppressed_recipient_is_skipped_even_when_the_content_cannot_render(
    delivery: Delivery,
) -> None:
    d = delivery
    suppressed = command("it-welcome", ContentType.EMAIL)
    unrenderable = command("it-welcome", ContentType.EMAIL)
    # A command issued long before 1970 cannot carry tracking links (their expiry would
    # be before the epoch): it does not render.
    suppressed, unrenderable = (
        c.model_copy(update={"issued_at": datetime(1901, 1, 1, tzinfo=UTC)})
        for c in (suppressed, unrenderable)
    )
    await d.fetch(
        "INSERT INTO suppressions (prospect_id, channel, reason) VALUES ($1, 'email', 'complaint')",
        suppressed.prospect_id,
    )
    await d.send(suppressed, unrenderable)
    outcomes = _outcomes(await d.messages(d.topics.outcomes, 2))
    skipped, failed = outcomes[suppressed.prospect_id], outcomes[unrenderable.prospect_id]
    assert (skipped.status, skipped.reason) == (DeliveryStatus.SKIPPED, "complaint")
    assert failed.status is DeliveryStatus.FAILED
    assert (failed.reason or "").startswith("cannot render")
    rows = await d.fetch(
        "SELECT command_id, status FROM deliveries WHERE command_id = ANY($1::uuid[])",
        [suppressed.command_id, unrenderable.command_id],
    )
    assert {r["command_id"]: r["status"] for r in rows} == {
        suppressed.command_id: "skipped",
        unrenderable.command_id: "dead",  # dead-lettered with the reason, as before
    }
    assert d.smtp.inbox.data_attempts == 0
