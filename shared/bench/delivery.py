"""Delivery throughput (emails handed to an SMTP server) next to bare aiosmtplib, in one run.

N delivery commands (``it-welcome``, distinct prospects and addresses) are produced to
throwaway topics before the delivery service (its own process, as ``trayecto serve
delivery`` runs it) starts on a throwaway database, with an SMTP sink that only counts
(``smtp_sink``); it is timed from the first accepted DATA to the N-th. The limits: the
same number of copies of one message rendered by the service's renderer, sent to the
same sink by bare aiosmtplib clients at the same concurrency, in their own process,
once over one connection per client and once over one connection per message.

``python -m shared.bench.delivery reuse|per-message PORT FILE COUNT CONCURRENCY FROM TO``
runs the bare sender (the message's bytes in FILE).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosmtplib
import asyncpg

from services.delivery.content import RenderedMessage, load_catalogue
from services.delivery.render import render
from services.delivery.smtp import Envelope
from shared.contract import Channel, ContentType, DeliveryCommand
from shared.db import migrate
from shared.kafka.codec import encode
from shared.kafka.producer import Producer
from shared.settings import Settings
from shared.topics import DELIVERY_COMMANDS, DELIVERY_DLQ, DELIVERY_OUTCOMES

from .report import Report
from .resources import free_port, service_process, throwaway_database, throwaway_topics
from .smtp_sink import SmtpSink

Progress = Callable[[str], None]

CONTENT = "it-welcome"
NO_PACING = "email=1000000,webhook=1000000"
POLL_S = 0.1
TIMEOUT_S = 300.0
RAW_MODES = {"raw": "reuse", "raw_per_message": "per-message"}


@dataclass(frozen=True, slots=True)
class Sizes:
    emails: int = 3_000
    concurrency: int | None = None
    """Sends in flight, in the service and in each bare sender; None: the settings'."""


@dataclass(frozen=True, slots=True)
class _Message:
    """One rendered email as the service hands it to SMTP."""

    sender: str
    recipient: str
    data: bytes


async def run(
    settings: Settings, report: Report, rounds: int, progress: Progress, sizes: Sizes
) -> None:
    """Rounds of (service, raw over reused connections, raw one connection per message)."""
    concurrency = sizes.concurrency or settings.delivery_concurrency
    report.context["delivery_emails"] = str(sizes.emails)
    report.context["delivery_concurrency"] = str(concurrency)
    prefix = f"bench.{uuid.uuid4().hex[:10]}."
    run_id = uuid.uuid4().hex[:8]
    commands = [_command(f"bench-{run_id}-{i}") for i in range(sizes.emails)]
    message = _render(settings, commands[0])
    report.context["delivery_message_bytes"] = str(len(message.data))
    rates: dict[str, list[float]] = {}
    topics = [prefix + name for name in (DELIVERY_COMMANDS, DELIVERY_OUTCOMES, DELIVERY_DLQ)]
    async with throwaway_database(settings) as dsn, throwaway_topics(settings, topics):
        await migrate(dsn)
        await _produce(settings, prefix + DELIVERY_COMMANDS, commands, progress)
        with SmtpSink() as sink, tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "message.eml"
            data.write_bytes(message.data)
            for round_ in range(1, rounds + 1):
                step = f"delivery: round {round_}/{rounds}"
                await _reset(dsn)
                rates.setdefault("service", []).append(
                    await _service_round(
                        settings, dsn, prefix, sink, sizes.emails, concurrency, progress, step
                    )
                )
                for name, mode in RAW_MODES.items():
                    progress(f"{step}, bare aiosmtplib ({mode} connection)")
                    rates.setdefault(name, []).append(
                        await _raw_round(sink, data, message, sizes.emails, concurrency, mode)
                    )
    median = {name: statistics.median(values) for name, values in rates.items()}
    report.add("delivery.emails_per_s", median["service"], "emails/s")
    report.add("delivery.raw_aiosmtplib.emails_per_s", median["raw"], "emails/s")
    report.add(
        "delivery.raw_aiosmtplib_per_message_connection.emails_per_s",
        median["raw_per_message"],
        "emails/s",
    )
    report.add("delivery.ratio_to_raw", median["service"] / median["raw"], "ratio")
    report.add(
        "delivery.ratio_to_raw_per_message_connection",
        median["service"] / median["raw_per_message"],
        "ratio",
    )


def _command(prospect: str) -> DeliveryCommand:
    return DeliveryCommand(
        prospect_id=prospect,
        command_id=uuid.uuid4(),
        journey="bench-welcome",
        journey_version=1,
        step="welcome",
        content=CONTENT,
        content_type=ContentType.EMAIL,
        channel=Channel.EMAIL,
        locale="es",
        recipient={
            "prospect_id": prospect,
            "email": f"{prospect}@example.com",
            "first_name": "Ana",
        },
    )


def _render(settings: Settings, command: DeliveryCommand) -> _Message:
    """The envelope and bytes the service hands to SMTP for ``command``."""
    rendered = render(command, load_catalogue(settings.content_dir), settings, datetime.now(UTC))
    assert isinstance(rendered, RenderedMessage), "an email content renders an email"
    envelope = Envelope.of(rendered, settings.smtp_sender)
    [recipient] = envelope.recipients
    return _Message(sender=envelope.sender, recipient=recipient, data=envelope.data)


async def _produce(
    settings: Settings, topic: str, commands: list[DeliveryCommand], progress: Progress
) -> None:
    producer = Producer(settings, client_id="bench-delivery", timeout_s=30)
    await producer.start()
    try:
        for start in range(0, len(commands), 2000):
            progress(f"delivery: producing {start:,}/{len(commands):,} commands")
            chunk = commands[start : start + 2000]
            await producer.send_records([(topic, encode(command)) for command in chunk])
    finally:
        await producer.stop()


async def _reset(dsn: str) -> None:
    """Every command pending again: the same empty tables before each round."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE deliveries, outbox RESTART IDENTITY")
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def _service_round(
    settings: Settings,
    dsn: str,
    prefix: str,
    sink: SmtpSink,
    emails: int,
    concurrency: int,
    progress: Progress,
    step: str,
) -> float:
    """Emails/s of the delivery service, from the first DATA the sink accepted to the N-th.

    A fresh consumer group reads the N commands again; process start-up and the group
    join come before the first DATA and are not counted.
    """
    group = f"bench-delivery-{uuid.uuid4().hex[:8]}"
    argv = ("-m", "shared.bench.server", "delivery", str(free_port()), prefix, group)
    env = {
        **os.environ,
        "TRAYECTO_DATABASE_URL": dsn,
        "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TRAYECTO_SMTP_URL": sink.url,
        "TRAYECTO_DELIVERY_RATE_LIMITS": NO_PACING,
        "TRAYECTO_DELIVERY_CONCURRENCY": str(concurrency),
        "TRAYECTO_LOG_LEVEL": "WARNING",
    }
    sink.reset()
    started = time.monotonic()
    async with service_process(argv, env) as process:
        while (tally := sink.tally()).messages < emails:
            progress(f"{step}, delivery service: {tally.messages:,}/{emails:,} emails")
            if process.returncode is not None:
                raise RuntimeError("the benchmark's delivery process exited")
            if time.monotonic() - started > TIMEOUT_S:
                raise RuntimeError(f"the delivery service sent {tally.messages} of {emails}")
            await asyncio.sleep(POLL_S)
    if tally.messages != emails:
        raise RuntimeError(f"the SMTP sink received {tally.messages} emails for {emails} commands")
    return tally.rate()


async def _raw_round(
    sink: SmtpSink, data: Path, message: _Message, emails: int, concurrency: int, mode: str
) -> float:
    """Emails/s of the bare sender process, from the first accepted DATA to the N-th."""
    argv = ("-m", "shared.bench.delivery", mode, str(sink.port), str(data), str(emails),
            str(concurrency), message.sender, message.recipient)  # fmt: skip
    sink.reset()
    async with service_process(argv, dict(os.environ)) as process:
        await asyncio.wait_for(process.wait(), TIMEOUT_S)
    tally = sink.tally()
    if process.returncode != 0 or tally.messages != emails:
        raise RuntimeError(f"the bare SMTP sender handed off {tally.messages} of {emails} emails")
    return tally.rate()


# ------------------------------------------------ raw limit: bare aiosmtplib, own process


async def send_bare(
    port: int, message: _Message, emails: int, concurrency: int, *, reuse: bool
) -> None:
    """``emails`` copies over ``concurrency`` clients, each reusing its connection or not."""

    def client() -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)

    async def worker(count: int) -> None:
        if reuse:
            async with client() as smtp:
                for _ in range(count):
                    await smtp.sendmail(message.sender, [message.recipient], message.data)
            return
        for _ in range(count):  # connect, send, quit: no session kept
            async with client() as smtp:
                await smtp.sendmail(message.sender, [message.recipient], message.data)

    share, extra = divmod(emails, concurrency)
    await asyncio.gather(*(worker(share + (i < extra)) for i in range(concurrency)))


def main() -> None:
    match sys.argv[1:]:
        case [("reuse" | "per-message") as mode, port, path, emails, concurrency, sender, to]:
            message = _Message(sender, to, Path(path).read_bytes())
            asyncio.run(
                send_bare(int(port), message, int(emails), int(concurrency), reuse=mode == "reuse")
            )
        case _:
            sys.exit(
                "usage: python -m shared.bench.delivery reuse|per-message"
                " PORT FILE COUNT CONCURRENCY FROM TO"
            )


if __name__ == "__main__":
    main()
