"""The webhook channel against a real HTTP receiver: signed JSON, retried on 5xx, never on 4xx."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from pydantic import SecretStr

from shared.contract import Channel, ContentType, DeliveryOutcome, DeliveryStatus
from shared.settings import Settings
from shared.tracking import keys_of, verify_link

from .conftest import Delivery, Receiver, command, running_delivery
from .smtp_server import SmtpServer

SECRET = "test-webhook-secret"
SOCIAL = "it-webinar-social"


@contextlib.asynccontextmanager
async def _delivery(
    settings: Settings, dsn: str, smtp: SmtpServer, webhook_url: str
) -> AsyncIterator[Delivery]:
    """The ``delivery`` fixture's service, with the webhook channel configured (or not)."""
    async with running_delivery(
        settings, dsn, smtp, webhook_url=webhook_url, webhook_secret=SecretStr(SECRET)
    ) as delivery:
        yield delivery


@pytest.fixture
async def hooked(
    settings: Settings, fresh_database: str, smtp: SmtpServer, receiver: Receiver
) -> AsyncIterator[Delivery]:
    async with _delivery(settings, fresh_database, smtp, receiver.url) as delivery:
        yield delivery


@pytest.fixture
async def unhooked(
    settings: Settings, fresh_database: str, smtp: SmtpServer
) -> AsyncIterator[Delivery]:
    async with _delivery(settings, fresh_database, smtp, "") as delivery:
        yield delivery


def _outcomes(messages: Sequence[object]) -> list[DeliveryOutcome]:
    return sorted((m for m in messages if isinstance(m, DeliveryOutcome)), key=lambda o: o.attempt)


async def _status(d: Delivery, command_id: uuid.UUID) -> str:
    [row] = await d.fetch("SELECT status FROM deliveries WHERE command_id = $1", command_id)
    return str(row["status"])


async def test_a_social_post_is_posted_once_signed_and_reported_sent(
    hooked: Delivery, receiver: Receiver
) -> None:
    d = hooked
    sent = command(SOCIAL, ContentType.SOCIAL_POST, channel=Channel.WEBHOOK)
    await d.send(sent)
    [outcome] = _outcomes(await d.messages(d.topics.outcomes, 1))
    assert outcome.status is DeliveryStatus.SENT
    assert outcome.command_id == sent.command_id
    assert outcome.channel is Channel.WEBHOOK
    assert outcome.reason == "200 OK"
    [post] = receiver.posts
    assert post.headers["content-type"] == "application/json"
    timestamp = post.headers["x-trayecto-timestamp"]
    assert abs(time.time() - int(timestamp)) < 60
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + post.body, hashlib.sha256)
    assert hmac.compare_digest(
        post.headers["x-trayecto-signature"], "sha256=" + expected.hexdigest()
    )
    body = json.loads(post.body)
    assert body["command_id"] == str(sent.command_id)
    assert body["prospect"] == sent.prospect_id
    assert body["content"] == SOCIAL
    assert body["content_type"] == "social_post"
    assert body["channel"] == "webhook"
    assert body["locale"] == "es"
    assert "Trayecto" in body["text"]
    claims = verify_link(keys_of(d.settings), body["url"].rpartition("/t/c/")[2], time.time())
    assert claims.url == "https://trayecto.example/webinars/arquitectura"
    assert claims.command_id == str(sent.command_id)
    assert claims.channel is Channel.WEBHOOK
    assert d.smtp.inbox.messages == []
    assert await _status(d, sent.command_id) == "sent"


async def test_a_social_post_in_english_is_posted_in_english(
    hooked: Delivery, receiver: Receiver
) -> None:
    d = hooked
    sent = command(SOCIAL, ContentType.SOCIAL_POST, channel=Channel.WEBHOOK, locale="en")
    await d.send(sent)
    [outcome] = _outcomes(await d.messages(d.topics.outcomes, 1))
    assert outcome.status is DeliveryStatus.SENT
    [post] = receiver.posts
    body = json.loads(post.body)
    assert body["locale"] == "en"
    assert body["title"] == "Trayecto architecture webinar"
    assert body["text"].startswith("Evaluating marketing automation tools?")
    claims = verify_link(keys_of(d.settings), body["url"].rpartition("/t/c/")[2], time.time())
    assert claims.command_id == str(sent.command_id)


async def test_a_500_is_retried_and_then_posted_exactly_once(
    hooked: Delivery, receiver: Receiver
) -> None:
    d = hooked
    receiver.answers.append(500)
    sent = command(SOCIAL, ContentType.SOCIAL_POST, channel=Channel.WEBHOOK)
    await d.send(sent)
    outcomes = _outcomes(await d.messages(d.topics.outcomes, 2))
    assert [(o.status, o.attempt) for o in outcomes] == [
        (DeliveryStatus.RETRIED, 1),
        (DeliveryStatus.SENT, 2),
    ]
    assert outcomes[0].reason == "webhook answered 500"
    assert [p.status for p in receiver.posts] == [500, 200]
    assert len({p.body for p in receiver.posts}) == 1  # the same payload, posted again
    assert await _status(d, sent.command_id) == "sent"


async def test_a_400_fails_without_a_retry(hooked: Delivery, receiver: Receiver) -> None:
    d = hooked
    receiver.answers.append(400)
    sent = command(SOCIAL, ContentType.SOCIAL_POST, channel=Channel.WEBHOOK)
    await d.send(sent)
    [outcome] = _outcomes(await d.messages(d.topics.outcomes, 1))
    assert outcome.status is DeliveryStatus.FAILED
    assert outcome.reason == "webhook answered 400"
    await asyncio.sleep(1.0)  # longer than any retry delay (0.3 s base, jitter ≤ 1.5x)
    assert [p.status for p in receiver.posts] == [400]
    assert await _status(d, sent.command_id) == "failed"


async def test_without_a_webhook_url_the_send_fails_naming_the_setting(
    unhooked: Delivery,
) -> None:
    d = unhooked
    sent = command(SOCIAL, ContentType.SOCIAL_POST, channel=Channel.WEBHOOK)
    await d.send(sent)
    [outcome] = _outcomes(await d.messages(d.topics.outcomes, 1))
    assert outcome.status is DeliveryStatus.FAILED
    assert "TRAYECTO_WEBHOOK_URL" in (outcome.reason or "")
    assert await _status(d, sent.command_id) == "failed"
