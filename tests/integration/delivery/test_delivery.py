"""Commands in, real SMTP out: each sent once, to those who consented, every outcome published."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from email.message import EmailMessage
from pathlib import Path

import icalendar

from services.delivery import create_app
from shared.contract import Channel, ContentType, DeliveryOutcome, DeliveryStatus
from shared.kafka.producer import Producer
from shared.settings import Settings
from shared.tracking import LinkClaims, LinkKind, keys_of, verify_link

from ..ingest.conftest import free_port, read_topic, serve
from .conftest import Delivery, command, prepare
from .smtp_server import SmtpServer

TOKEN = re.compile(r"/t/(?:o|c|v|d|u|f|w)/([A-Za-z0-9_\-.]+)")
LINK = re.compile(r"/t/(o|c|v|d|u|f|w)/([A-Za-z0-9_\-.]+)(/register|/attend)?")
MAIN_LINK: dict[ContentType, LinkKind] = {
    ContentType.VIDEO: "v",
    ContentType.PDF: "d",
    ContentType.WEBINAR_INVITE: "w/register",
    ContentType.EVENT_INVITE: "w/register",
}


def _parts(message: EmailMessage) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            found[part.get_content_type()] = str(part.get_content())
    return found


def _links(settings: Settings, html: str) -> dict[str, list[LinkClaims]]:
    """The tracking links of ``html`` by the kind each was signed for, each verified."""
    found: dict[str, list[LinkClaims]] = {}
    for path, token, action in LINK.findall(html):
        claims = verify_link(keys_of(settings), token, time.time())
        assert claims.kind == path + action, (path, action, claims.kind)
        found.setdefault(path + action, []).append(claims)
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
        links = _links(d.settings, parts["text/html"])
        assert links["o"], "no open pixel"
        assert f'src="{d.settings.public_url}/t/o/' in parts["text/html"]
        main = MAIN_LINK.get(sent.content_type)
        if main is not None:
            assert links.get(main), f"{sent.content} has no {main} link"
        files = f"{d.settings.public_url}/content/files/"
        if sent.content_type is ContentType.VIDEO:
            assert {c.url for c in links["v"]} == {f"{files}trayecto-intro.webm"}
            assert {c.channel for c in links["v"]} == {Channel.VIDEO}
        if sent.content_type is ContentType.PDF:
            pdf = f"{files}it-video-summary-{sent.locale}.pdf"
            assert {c.url for c in links["d"]} == {pdf}
        if sent.content_type in {ContentType.WEBINAR_INVITE, ContentType.EVENT_INVITE}:
            assert all(c.channel is Channel.EMAIL for c in links["w/register"])
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
    await asyncio.sleep(1.0)  # longer than any retry delay (0.3 s base, jitter ≤ 1.5x)
    assert d.smtp.inbox.rcpt_attempts == 1
    assert d.smtp.inbox.data_attempts == 0
    [row] = await d.fetch("SELECT status FROM deliveries WHERE command_id = $1", sent.command_id)
    assert row["status"] == "bounced"


async def test_a_refusal_of_the_message_fails_once_without_suppressing(
    delivery: Delivery,
) -> None:
    d = delivery
    d.smtp.inbox.answers.append("554 5.7.1 message refused as spam")
    sent = command("it-welcome", ContentType.EMAIL)
    await d.send(sent)
    await d.messages(d.topics.outcomes, 1)
    await asyncio.sleep(1.0)  # longer than any retry delay (0.3 s base, jitter ≤ 1.5x)
    outcomes = _outcomes(await d.messages(d.topics.outcomes, 1, timeout_s=2))
    assert [(o.status, o.attempt) for o in outcomes] == [(DeliveryStatus.FAILED, 1)]
    assert outcomes[0].reason == "554 5.7.1 message refused as spam"
    assert d.smtp.inbox.data_attempts == 1
    assert d.smtp.inbox.messages == []
    assert await d.fetch("SELECT 1 FROM suppressions") == []
    [row] = await d.fetch("SELECT status FROM deliveries WHERE command_id = $1", sent.command_id)
    assert row["status"] == "failed"


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
    gave_up = "gave up after 3 attempts: 451 4.3.0 busy"
    assert mine[-1].reason == gave_up
    assert [o.reason for o in mine[:2]] == ["451 4.3.0 busy"] * 2
    [render_failure] = [o for o in outcomes if o.command_id == broken.command_id]
    assert render_failure.status is DeliveryStatus.FAILED
    assert "not in the catalogue" in (render_failure.reason or "")
    letters = {letter.command_id: reason for letter, reason in await d.dead_letters(2)}
    assert letters.keys() == {sent.command_id, broken.command_id}
    assert letters[sent.command_id] == gave_up
    assert letters[broken.command_id] == render_failure.reason
    assert letters[broken.command_id].startswith("cannot render: ")
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


async def test_a_variant_is_sent_with_its_own_copy_and_reported(delivery: Delivery) -> None:
    d = delivery
    plain_es = command("it-demo-offer", ContentType.EMAIL, variant="plain")
    plain_en = command("it-demo-offer", ContentType.EMAIL, variant="plain", locale="en")
    control = command("it-demo-offer", ContentType.EMAIL)
    sent = (plain_es, plain_en, control)
    await d.send(*sent)
    outcomes = {o.command_id: o for o in _outcomes(await d.messages(d.topics.outcomes, 3))}
    assert {o.status for o in outcomes.values()} == {DeliveryStatus.SENT}
    assert outcomes[plain_es.command_id].variant == "plain"
    assert outcomes[plain_en.command_id].variant == "plain"
    assert outcomes[control.command_id].variant is None
    received = {str(m["Message-ID"]): m for m in d.smtp.inbox.messages}
    assert len(received) == len(d.smtp.inbox.messages) == 3
    by_command = {c.command_id: received[f"<{c.command_id}@trayecto>"] for c in sent}
    expected = {
        plain_es.command_id: ("¿Hablamos 30 minutos?", "it-demo-offer; variant=plain"),
        plain_en.command_id: ("30 minutes to talk?", "it-demo-offer; variant=plain"),
        control.command_id: (
            "¿Una demo técnica de 30 minutos con tus propios datos?",
            "it-demo-offer",
        ),
    }
    for command_id, (subject, content) in expected.items():
        message = by_command[command_id]
        assert (message["Subject"], message["X-Trayecto-Content"]) == (subject, content)
    # The variant's template and signature: a personal note, no banner.
    assert "Marcos Ruiz" in _parts(by_command[plain_es.command_id])["text/plain"]
    assert "Solutions engineer" in _parts(by_command[plain_en.command_id])["text/plain"]
    assert "Marcos Ruiz" not in _parts(by_command[control.command_id])["text/plain"]


async def test_a_locale_without_copy_falls_back_to_its_language_then_spanish(
    delivery: Delivery,
) -> None:
    d = delivery
    cases = {
        "fr": ("es", "Tu guía técnica de Trayecto ya está aquí"),
        "en-GB": ("en", "Your Trayecto technical guide is here"),
        "es-MX": ("es", "Tu guía técnica de Trayecto ya está aquí"),
        "en": ("en", "Your Trayecto technical guide is here"),
    }
    sent = {locale: command("it-welcome", ContentType.EMAIL, locale=locale) for locale in cases}
    await d.send(*sent.values())
    outcomes = _outcomes(await d.messages(d.topics.outcomes, len(sent)))
    assert Counter(o.status for o in outcomes) == {DeliveryStatus.SENT: len(sent)}
    received = {str(m["Message-ID"]): m for m in d.smtp.inbox.messages}
    for locale, (used, subject) in cases.items():
        message = received[f"<{sent[locale].command_id}@trayecto>"]
        assert message["Subject"] == subject, locale
        html = _parts(message)["text/html"]
        assert f'<html lang="{used}">' in html, locale
