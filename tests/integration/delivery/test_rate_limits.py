"""Per-channel rate limits (``TRAYECTO_DELIVERY_RATE_LIMITS``) at the real SMTP server:
emails are spaced to their channel's rate, and a paced channel holds no other back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr

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
