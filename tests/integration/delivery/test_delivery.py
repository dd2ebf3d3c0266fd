"""Commands in, real SMTP out: each sent once, to those who consented, every outcome published."""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

import icalendar

from services.delivery import create_app
from shared.contract import ContentType, DeliveryCommand, DeliveryOutcome, DeliveryStatus
from shared.kafka.producer import Producer
from shared.settings import Settings
from shared.tracking import keys_of, verify_link

from ..ingest.conftest import free_port, read_topic, serve
from .conftest import Delivery, command, prepare
from .smtp_server import SmtpServer

TOKEN = re.compile(r"/t/(?:o|c|v|d|u|f|w)/([A-Za-z0-9_\-.]+)")


def _parts(message: EmailMessage) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            found[part.get_content_type()] = str(part.get_content())
    return found


def _outcomes(messages: Sequence[object]) -> list[DeliveryOutcome]:
    return [m for m in messages if isinstance(m, DeliveryOutcome)]


async def test_each_content_type_and_locale_is_sent_once_with_verifiable_links(
    delivery: Delivery,
) -> None:
    d = delivery
    commands = [
        command(content, kind, locale=locale)
        for content, kind in (
            ("it-welcome", ContentType.EMAIL),
            ("it-video-intro", ContentType.VIDEO),
            ("it-pdf-summary", ContentType.PDF),
            ("it-webinar-invite", ContentType.WEBINAR_INVITE),
            ("ent-executive-briefing", ContentType.EVENT_INVITE),
        )
        for locale in ("es", "en")
    ]
    await d.send(*commands)
    await d.send(commands[0], commands[3])  # redelivered commands: no second message

    async def all_received() -> bool:
        return len(d.smtp.inbox.messages) >= len(commands)

    await d.until(all_received, what="every message at the SMTP server")
    outcomes = _outcomes(await d.messages(d.topics.outcomes, len(commands)))
    assert Counter(o.status for o in outcomes) == {DeliveryStatus.SENT: len(commands)}
    received = {str(m["Message-ID"]): m for m in d.smtp.inbox.messages}
    assert len(d.smtp.inbox.messages) == len(received) == len(commands)
    keys = keys_of(d.settings)
    for sent in commands:
        message = received[f"<{sent.command_id}@trayecto>"]
        assert message["To"].addresses[0].addr_spec == sent.recipient["email"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "/t/u/" in message["List-Unsubscribe"]
        parts = _parts(message)
        assert {"text/plain", "text/html"} <= set(parts)
        tokens = TOKEN.findall(parts["text/html"]) + TOKEN.findall(message["List-Unsubscribe"])
        assert tokens
        for token in tokens:
            claims = verify_link(keys, token, time.time())
            assert claims.prospect_id == sent.prospect_id
            assert claims.command_id == str(sent.command_id)
        if sent.content_type in {ContentType.WEBINAR_INVITE, ContentType.EVENT_INVITE}:
            [ics] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
            payload = ics.get_payload(decode=True)
            assert isinstance(payload, bytes)
            calendar = icalendar.Calendar.from_ical(payload)
            assert str(calendar["METHOD"]) == "REQUEST"
            [event] = calendar.walk("VEVENT")
            assert str(sent.recipient["email"]) in str(event["ATTENDEE"])
            assert str(sent.command_id) in str(event["UID"])
    spanish = _parts(received[f"<{commands[0].command_id}@trayecto>"])["text/plain"]
    english = _parts(received[f"<{commands[1].command_id}@trayecto>"])["text/plain"]
    assert spanish != english


async def test_suppressed_prospects_are_skipped(delivery: Delivery) -> None:
    d = delivery
    blocked = command("it-welcome", ContentType.EMAIL)
    await d.fetch(
        "INSERT INTO suppressions (prospect_id, channel, reason)"
        " VALUES ($1, 'email', 'unsubscribed')",
        blocked.prospect_id,
    )
    allowed = command("it-welcome", ContentType.EMAIL)
    await d.send(blocked, allowed)
    outcomes = _outcomes(await d.messages(d.topics.outcomes, 2))
    status = {o.prospect_id: (o.status, o.reason) for o in outcomes}
    assert status[blocked.prospect_id] == (DeliveryStatus.SKIPPED, "unsubscribed")
    assert status[allowed.prospect_id][0] is DeliveryStatus.SENT
    assert [str(m["Message-ID"]) for m in d.smtp.inbox.messages] == [
        f"<{allowed.command_id}@trayecto>"
    ]


async def test_451_then_250_gives_exactly_one_message(delivery: Delivery) -> None:
    d = delivery
    d.smtp.inbox.answers.append("451 4.3.0 try again later")
    sent = command("it-welcome", ContentType.EMAIL)
    await d.send(sent)
    outcomes = _outcomes(await d.messages(d.topics.outcomes, 2))
    assert [o.status for o in sorted(outcomes, key=lambda o: o.attempt)] == [
        DeliveryStatus.RETRIED,
        DeliveryStatus.SENT,
    ]
    assert d.smtp.inbox.data_attempts == 2
    assert d.smtp.inbox.by_message_id() == {f"<{sent.command_id}@trayecto>": 1}


async def test_a_refused_address_bounces_and_is_suppressed(delivery: Delivery) -> None:
    d = delivery
    sent = command("it-welcome", ContentType.EMAIL, email="nobody@example.com")
    d.smtp.inbox.refuse.add("nobody@example.com")
    await d.send(sent)
    [outcome] = _outcomes(await d.messages(d.topics.outcomes, 1))
    assert outcome.status is DeliveryStatus.BOUNCED
    rows = await d.fetch("SELECT reason FROM suppressions WHERE prospect_id = $1", sent.prospect_id)
    assert [r["reason"] for r in rows] == ["hard_bounce"]
    assert d.smtp.inbox.messages == []


async def test_after_the_last_attempt_the_command_is_dead_lettered(delivery: Delivery) -> None:
    d = delivery
    d.smtp.inbox.answers.extend(["451 4.3.0 busy"] * 10)
    sent = command("it-welcome", ContentType.EMAIL)
    broken = command("no-such-content", ContentType.EMAIL)
    await d.send(sent, broken)
    outcomes = _outcomes(await d.messages(d.topics.outcomes, 4, timeout_s=30))
    mine = sorted((o for o in outcomes if o.command_id == sent.command_id), key=lambda o: o.attempt)
    assert [o.status for o in mine] == [
        DeliveryStatus.RETRIED,
        DeliveryStatus.RETRIED,
        DeliveryStatus.FAILED,
    ]
    [render_failure] = [o for o in outcomes if o.command_id == broken.command_id]
    assert render_failure.status is DeliveryStatus.FAILED
    assert "not in the catalogue" in (render_failure.reason or "")
    letters = [
        m for m in await d.messages(d.topics.dead_letters, 2) if isinstance(m, DeliveryCommand)
    ]
    assert {m.command_id for m in letters} == {sent.command_id, broken.command_id}
    rows = await d.fetch("SELECT status FROM deliveries ORDER BY status")
    assert [r["status"] for r in rows] == ["dead", "dead"]


async def test_a_template_that_fails_is_a_failed_outcome_naming_it(
    settings: Settings, fresh_database: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    content = tmp_path / "content"
    shutil.copytree(settings.content_dir, content)
    # The "message" template now reads a variable nobody provides.
    (content / "templates" / "message.txt.j2").write_text(
        '{% extends "base.txt.j2" %}\n{% block feature %}{{ params.coupon_code }}{% endblock %}\n'
    )
    commands_topic, topics = await prepare(settings, fresh_database)
    app_settings = settings.model_copy(
        update={"database_url": fresh_database, "smtp_url": smtp.url, "content_dir": content}
    )
    port = free_port()
    server, task = await serve(
        create_app(app_settings, commands_topic=commands_topic, topics=topics, group=f"t-{port}"),
        port,
    )
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        broken = command("it-welcome", ContentType.EMAIL)  # uses the message template
        fine = command("it-video-intro", ContentType.VIDEO)  # uses the video template
        await producer.send(commands_topic, [broken, fine])
        outcomes = _outcomes(await read_topic(app_settings, topics.outcomes, 2))
    finally:
        await producer.stop()
        server.should_exit = True
        await task
    by_command = {o.command_id: o for o in outcomes}
    failed = by_command[broken.command_id]
    assert failed.status is DeliveryStatus.FAILED
    assert "message.txt.j2" in (failed.reason or "")
    assert "coupon_code" in (failed.reason or "")
    assert by_command[fine.command_id].status is DeliveryStatus.SENT  # the consumer kept going
    assert [str(m["Message-ID"]) for m in smtp.inbox.messages] == [f"<{fine.command_id}@trayecto>"]
