"""Per-channel rate limits (``TRAYECTO_DELIVERY_RATE_LIMITS``) at the real SMTP server:
emails are spaced to their channel's rate, and a paced channel holds no other back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from services.delivery import worker
from shared.contract import Channel, ContentType, DeliveryOutcome, DeliveryStatus
from shared.settings import Settings

from .conftest import Receiver, command, running_delivery
from .smtp_server import Inbox, SmtpServer

pytestmark = pytest.mark.integration

EMAILS = 20
EMAIL_RATE = 5.0
WEBHOOKS = 10
SLACK_S = 0.6
"""How much earlier than its turn an email may arrive: the pace is kept when a send
starts, and the first sends of a run also open the SMTP connections."""


@dataclass
class _TimedInbox(Inbox):
    """Notes when each message arrived (``time.monotonic``)."""

    arrivals: list[float] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        with self.lock:
            self.arrivals.append(time.monotonic())
        return answer


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(inbox=_TimedInbox()) as server:
        yield server


async def test_emails_are_paced_and_webhooks_are_not_held_back(
    settings: Settings, fresh_database: str, smtp: SmtpServer, receiver: Receiver
) -> None:
    inbox = smtp.inbox
    assert isinstance(inbox, _TimedInbox)
    async with running_delivery(
        settings,
        fresh_database,
        smtp,
        delivery_rate_limits=f"email={EMAIL_RATE:g},webhook=1000",
        webhook_url=receiver.url,
        webhook_secret=SecretStr("rate-limit-test-secret"),
    ) as d:
        emails = [command("it-welcome", ContentType.EMAIL) for _ in range(EMAILS)]
        posts = [
            command("it-webinar-social", ContentType.SOCIAL_POST, channel=Channel.WEBHOOK)
            for _ in range(WEBHOOKS)
        ]
        # The emails first: the webhook sends come in behind a paced backlog.
        await d.send(*emails)
        await d.send(*posts)
        outcomes = [
            m
            for m in await d.messages(d.topics.outcomes, EMAILS + WEBHOOKS, timeout_s=30)
            if isinstance(m, DeliveryOutcome)
        ]
    assert len(outcomes) == EMAILS + WEBHOOKS
    assert {o.status for o in outcomes} == {DeliveryStatus.SENT}
    assert len(inbox.messages) == EMAILS
    assert len(receiver.posts) == WEBHOOKS
    arrivals = sorted(inbox.arrivals)
    # A burst of one second's worth (5), then one every 0.2 s: 15 more take 3 s.
    spread = arrivals[-1] - arrivals[0]
    assert spread >= (EMAILS - EMAIL_RATE) / EMAIL_RATE - SLACK_S, f"emails took {spread:.2f} s"
    for i, first in enumerate(arrivals):
        for j in range(i + 1, len(arrivals)):
            # At most a burst (one second's worth) plus the rate times the time between.
            least = (j - i + 1 - EMAIL_RATE) / EMAIL_RATE - SLACK_S
            assert arrivals[j] - first >= least, (
                f"emails {i}..{j} within {arrivals[j] - first:.2f} s"
            )
    # The webhook posts do not wait for the email backlog: all are in while half the
    # emails are still waiting for their turn.
    last_post = max(p.at for p in receiver.posts)
    assert last_post < arrivals[EMAILS // 2], (
        f"the last webhook post came {last_post - arrivals[0]:.2f} s after the first email,"
        f" the emails took {spread:.2f} s"
    )


@dataclass
class _StalledInbox(Inbox):
    """Answers no DATA before ``release_at``; notes when each DATA began."""

    release_at: float = 0.0
    starts: list[float] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        with self.lock:
            self.starts.append(now)
        if now < self.release_at:
            await asyncio.sleep(self.release_at - now)
        return await super().handle_DATA(server, session, envelope)


async def test_a_server_that_stalled_gets_no_burst_when_it_answers_again(
    settings: Settings, fresh_database: str
) -> None:
    """The pace is counted when a send starts: waiting senders save up no turns."""
    rate, count = 2.0, 16
    inbox = _StalledInbox()
    with SmtpServer(inbox=inbox) as smtp:
        async with running_delivery(
            settings, fresh_database, smtp, delivery_rate_limits=f"email={rate:g}"
        ) as d:
            inbox.release_at = time.monotonic() + 6.0
            await d.send(*(command("it-welcome", ContentType.EMAIL) for _ in range(count)))
            outcomes = await d.messages(d.topics.outcomes, count, timeout_s=60)
    assert {o.status for o in outcomes if isinstance(o, DeliveryOutcome)} == {DeliveryStatus.SENT}
    after = [s for s in inbox.starts if s >= inbox.release_at]
    assert after, "every message began before the server answered again"
    # A turn saved at most (the bucket holds one second's worth: 2), not the stall's 12.
    burst = [s for s in after if s < inbox.release_at + 0.5]
    assert len(burst) <= rate + 1, f"{len(burst)} sends began within 0.5 s of the stall's end"


async def test_a_slow_channel_is_claimed_no_further_ahead_than_its_lease(
    settings: Settings, fresh_database: str, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 0.5 emails/s and a 4 s lease, a message claimed early would outlive its claim
    and be claimed again (a second attempt): each is claimed near its turn instead."""
    monkeypatch.setattr(worker, "RECOVER_EVERY_S", 1.0)  # abandoned claims looked for often
    count = 5
    async with running_delivery(
        settings, fresh_database, smtp, delivery_rate_limits="email=0.5", delivery_lease_s=4.0
    ) as d:
        await d.send(*(command("it-welcome", ContentType.EMAIL) for _ in range(count)))
        outcomes = [
            m
            for m in await d.messages(d.topics.outcomes, count, timeout_s=40)
            if isinstance(m, DeliveryOutcome)
        ]
        conn = await asyncpg.connect(d.dsn)
        try:
            attempts = [r["attempts"] for r in await conn.fetch("SELECT attempts FROM deliveries")]
        finally:
            await conn.close()
    assert [(o.status, o.attempt) for o in outcomes] == [(DeliveryStatus.SENT, 1)] * count
    assert attempts == [1] * count
    assert len(smtp.inbox.messages) == count
