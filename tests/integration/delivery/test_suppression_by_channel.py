"""Suppressions are per channel: one on email leaves the webhook channel alone, and one
on the webhook channel stops webhook sends (the receiver gets nothing)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from shared.contract import Channel, ContentType, DeliveryOutcome, DeliveryStatus
from shared.settings import Settings

from .conftest import Delivery, Receiver, command, running_delivery
from .smtp_server import SmtpServer

pytestmark = pytest.mark.integration

SOCIAL = "it-webinar-social"


@pytest.fixture
async def hooked(
    settings: Settings, fresh_database: str, smtp: SmtpServer, receiver: Receiver
) -> AsyncIterator[Delivery]:
    async with running_delivery(
        settings,
        fresh_database,
        smtp,
        webhook_url=receiver.url,
        webhook_secret=SecretStr("suppression-test-secret"),
    ) as delivery:
        yield delivery


async def _suppress(d: Delivery, prospect: str, channel: Channel, reason: str) -> None:
    await d.fetch(
        "INSERT INTO suppressions (prospect_id, channel, reason) VALUES ($1, $2, $3)",
        prospect,
        channel.value,
        reason,
    )


async def test_each_channel_has_its_own_suppressions(hooked: Delivery, receiver: Receiver) -> None:
    d = hooked
    no_email, no_webhook = f"p-{uuid.uuid4().hex[:8]}", f"p-{uuid.uuid4().hex[:8]}"
    await _suppress(d, no_email, Channel.EMAIL, "unsubscribed")
    await _suppress(d, no_webhook, Channel.WEBHOOK, "complaint")
    post_to_no_email = command(
        SOCIAL, ContentType.SOCIAL_POST, prospect=no_email, channel=Channel.WEBHOOK
    )
    email_to_no_email = command("it-welcome", ContentType.EMAIL, prospect=no_email)
    post_to_no_webhook = command(
        SOCIAL, ContentType.SOCIAL_POST, prospect=no_webhook, channel=Channel.WEBHOOK
    )
    email_to_no_webhook = command("it-welcome", ContentType.EMAIL, prospect=no_webhook)
    sent = (post_to_no_email, email_to_no_email, post_to_no_webhook, email_to_no_webhook)
    await d.send(*sent)
    outcomes = {
        m.command_id: (m.status, m.reason)
        for m in await d.messages(d.topics.outcomes, len(sent))
        if isinstance(m, DeliveryOutcome)
    }
    assert outcomes == {
        post_to_no_email.command_id: (DeliveryStatus.SENT, "200 OK"),
        email_to_no_email.command_id: (DeliveryStatus.SKIPPED, "unsubscribed"),
        post_to_no_webhook.command_id: (DeliveryStatus.SKIPPED, "complaint"),
        email_to_no_webhook.command_id: (DeliveryStatus.SENT, "250 2.0.0 queued"),
    }
    assert [json.loads(p.body)["command_id"] for p in receiver.posts] == [
        str(post_to_no_email.command_id)
    ]
    assert d.smtp.inbox.by_message_id() == {f"<{email_to_no_webhook.command_id}@trayecto>": 1}
    rows = await d.fetch("SELECT command_id, status FROM deliveries")
    assert {r["command_id"]: r["status"] for r in rows} == {
        post_to_no_email.command_id: "sent",
        email_to_no_email.command_id: "skipped",
        post_to_no_webhook.command_id: "skipped",
        email_to_no_webhook.command_id: "sent",
    }
