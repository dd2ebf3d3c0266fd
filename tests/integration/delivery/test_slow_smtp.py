"""A slow and flaky SMTP server: retries with backoff, at most one hand-off, no stall.

The server (aiosmtpd) answers by recipient:

- ``slow-``: takes the message, then delays its answer to DATA past the client's SMTP
  timeout. This is SMTP's classic ambiguity: the server may keep a message the client
  saw fail. What the product promises (README, ``services/delivery/worker.py``): a
  failure once DATA has started is *in doubt*, recorded as ``in_doubt`` with a
  ``failed`` outcome and never resent, so the server holds at most one copy (here:
  exactly one, the copy it kept), and the command is not retried.
- ``slowrcpt-``: delays its first answer to RCPT past the timeout: nothing was handed
  off, so the command is retried (``retried``) and then sent once.
- ``busy421-`` / ``busy451-``: answers the first DATA with a transient 421 / 451, then
  accepts: ``retried`` then ``sent``, one copy.
- ``down-``: answers every DATA with 451: after ``delivery_max_attempts`` attempts, with
  growing pauses between them, the command goes to ``delivery.dlq``.
- anything else: accepted at once. These commands are sent after the slow ones and
  must all be delivered: slow answers hold a send slot, never the consumer.

The SMTP timeout (``TRAYECTO_SMTP_TIMEOUT_S``, 30 s by default) is shortened so that a
slow answer costs seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from services.delivery import create_app
from shared.contract import ContentType, DeliveryCommand, DeliveryOutcome, DeliveryStatus
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, read_topic, serve
from .conftest import command, prepare
from .smtp_server import Inbox, SmtpServer

SMTP_TIMEOUT_S = 1.5
SLOW_S = 4.0
"""How long the slow answers take: longer than the SMTP timeout."""
MAX_ATTEMPTS = 3
RETRY_BASE_S = 0.3
KINDS = {"slow": 3, "slowrcpt": 3, "busy421": 3, "busy451": 3, "down": 3, "ok": 20}


@dataclass
class SlowInbox(Inbox):
    """The answers above, by recipient prefix; counts every RCPT and DATA per recipient."""

    rcpts: Counter[str] = field(default_factory=Counter)
    datas: Counter[str] = field(default_factory=Counter)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.rcpts[address] += 1
            first = self.rcpts[address] == 1
        if address.startswith("slowrcpt-") and first:
            await asyncio.sleep(SLOW_S)
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        address = envelope.rcpt_tos[0]
        with self.lock:
            self.datas[address] += 1
            first = self.datas[address] == 1
        if address.startswith("down-"):
            return "451 4.3.0 mailbox busy, try again later"
        if address.startswith("busy421-") and first:
            return "421 4.3.2 service not available, closing channel"
        if address.startswith("busy451-") and first:
            return "451 4.3.0 try again later"
        answer = await super().handle_DATA(server, session, envelope)  # the server keeps it
        if address.startswith("slow-"):
            await asyncio.sleep(SLOW_S)
        return answer


@pytest.fixture
def slow_smtp() -> Iterator[SmtpServer]:
    with SmtpServer(inbox=SlowInbox()) as server:
        yield server


def _commands(kind: str, run: str) -> list[DeliveryCommand]:
    return [
        command("it-welcome", ContentType.EMAIL, email=f"{kind}-{i}-{run}@example.com")
        for i in range(KINDS[kind])
    ]


async def test_slow_and_flaky_smtp_server(
    settings: Settings,
    fresh_database: str,
    slow_smtp: SmtpServer,
) -> None:
    started = time.monotonic()
    inbox = slow_smtp.inbox
    assert isinstance(inbox, SlowInbox)
    commands_topic, topics = await prepare(settings, fresh_database)
    app_settings = settings.model_copy(
        update={
            "database_url": fresh_database,
            "smtp_url": slow_smtp.url,
            "delivery_retry_base_s": RETRY_BASE_S,
            "delivery_max_attempts": MAX_ATTEMPTS,
            "delivery_rate_limits": "email=1000",
            "smtp_timeout_s": SMTP_TIMEOUT_S,
        }
    )
    port = free_port()
    group = f"test-slow-smtp-{uuid.uuid4().hex[:8]}"
    server, serving = await serve(
        create_app(app_settings, commands_topic=commands_topic, topics=topics, group=group), port
    )
    run = uuid.uuid4().hex[:6]
    sent = {kind: _commands(kind, run) for kind in KINDS}
    every = [c for batch in sent.values() for c in batch]
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        # The troublesome ones first, the ordinary ones behind them.
        await producer.send(commands_topic, [c for k in KINDS if k != "ok" for c in sent[k]])
        await asyncio.sleep(0.5)
        await producer.send(commands_topic, sent["ok"])
        expected = {
            "slow": [DeliveryStatus.FAILED],
            "slowrcpt": [DeliveryStatus.RETRIED, DeliveryStatus.SENT],
            "busy421": [DeliveryStatus.RETRIED, DeliveryStatus.SENT],
            "busy451": [DeliveryStatus.RETRIED, DeliveryStatus.SENT],
            "down": [DeliveryStatus.RETRIED] * (MAX_ATTEMPTS - 1) + [DeliveryStatus.FAILED],
            "ok": [DeliveryStatus.SENT],
        }
        total = sum(len(expected[k]) * n for k, n in KINDS.items())
        messages = await read_topic(app_settings, topics.outcomes, total, timeout_s=60)
        outcomes = [m for m in messages if isinstance(m, DeliveryOutcome)]
        letters = await read_topic(app_settings, topics.dead_letters, KINDS["down"], 20)
        # The service is still up: no loop crashed (a crash stops the server).
        assert not serving.done()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/livez")).status_code == 200
    finally:
        await producer.stop()
        server.should_exit = True
        await serving

    by_command: dict[uuid.UUID, list[DeliveryOutcome]] = {}
    for outcome in outcomes:
        by_command.setdefault(outcome.command_id, []).append(outcome)
    assert len({o.event_id for o in outcomes}) == len(outcomes) == total
    for kind, commands in sent.items():
        for c in commands:
            mine = sorted(by_command[c.command_id], key=lambda o: o.attempt)
            assert [o.status for o in mine] == expected[kind], (kind, mine)
            assert [o.attempt for o in mine] == list(range(1, len(mine) + 1))
    # In doubt, not retried: the timeout came after DATA started.
    for c in sent["slow"]:
        [failed] = by_command[c.command_id]
        assert (failed.reason or "").startswith("connection lost during DATA"), failed.reason
    # Backoff: each retry waits longer than half the (jittered, doubling) delay.
    for c in sent["down"]:
        times = [o.occurred_at for o in sorted(by_command[c.command_id], key=lambda o: o.attempt)]
        for attempt, (before, after) in enumerate(itertools.pairwise(times), start=1):
            floor = RETRY_BASE_S * 2 ** (attempt - 1) * 0.5
            assert (after - before).total_seconds() >= floor, (attempt, times)
    # Exactly the commands that gave up are dead-lettered.
    assert {m.command_id for m in letters if isinstance(m, DeliveryCommand)} == {
        c.command_id for c in sent["down"]
    }

    # At the server: at most one copy of any command; one of every command sent; the
    # in-doubt ones it kept are there once (and were not sent again).
    copies = inbox.by_message_id()
    assert max(copies.values()) == 1
    delivered = {f"<{c.command_id}@trayecto>" for k in KINDS if k != "down" for c in sent[k]}
    assert set(copies) == delivered
    # Bounded work: exactly the DATA and RCPT commands the scenario calls for, no more.
    data_per_kind = {"slow": 1, "slowrcpt": 1, "busy421": 2, "busy451": 2, "down": MAX_ATTEMPTS}
    for kind, commands in sent.items():
        for c in commands:
            address = str(c.recipient["email"])
            assert inbox.datas[address] == data_per_kind.get(kind, 1), (kind, inbox.datas)
            assert inbox.rcpts[address] == len(expected[kind]), (kind, inbox.rcpts)
    elapsed = time.monotonic() - started
    retried = sum(1 for o in outcomes if o.status is DeliveryStatus.RETRIED)
    print(
        f"\nslow smtp: commands={len(every)} outcomes={len(outcomes)} retried={retried}"
        f" sent={sum(1 for o in outcomes if o.status is DeliveryStatus.SENT)}"
        f" in_doubt={len(sent['slow'])} dead_lettered={len(letters)}"
        f" server_copies={sum(copies.values())} max_copies={max(copies.values())}"
        f" data_commands={sum(inbox.datas.values())} runtime={elapsed:.1f}s"
    )
