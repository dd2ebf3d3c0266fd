"""Orchestrator throughput and durable timers, each next to its raw limit, in one run.

Events: N ``lead_captured`` events for N prospects are produced to throwaway topics
before the orchestrator (its own process, as ``trayecto serve orchestrator`` runs it)
starts on a throwaway database; it is timed from its first processed event to the N-th
and until its outbox is drained. The limit: a bare consumer writing the same rows with
the same statements, one transaction per batch, without the engine, locks or relay.

Timers: among 1M pending timers, the orchestrator's claimer fires timers due over a few
seconds (lateness) and then a backlog of due timers (rate), next to a bare
``DELETE … FOR UPDATE SKIP LOCKED`` loop on the same backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from services.orchestrator.timers import CLAIM_BATCH, claim_due, fire_forever
from services.orchestrator.topics import OrchestratorTopics
from shared.contract import Campaign, Channel, StageTransition, TouchpointEvent, TouchpointType
from shared.db import create_pool, migrate
from shared.kafka import EVENT_ID_HEADER
from shared.kafka.codec import encode
from shared.kafka.producer import Producer
from shared.settings import Settings

from .report import Report
from .resources import free_port, service_process, throwaway_database, throwaway_topics

Progress = Callable[[str], None]

JOURNEY_ID = "bench-welcome"
JOURNEY = f"""
journey: {JOURNEY_ID}
title: Benchmark welcome
persona: {{id: bench}}
entry: {{event: lead_captured}}
steps:
  - id: welcome
    send: {{content: welcome, type: email}}
    map: {{stage: visitor}}
  - id: pause
    wait: 1d
  - id: done
    exit: completed
"""
BATCH = 500
"""Records per consumed batch, as the orchestrator's consumer (``max_poll_records``)."""
POLL_S = 0.1
SPREAD_S = 5.0
"""The timers of the lateness phase come due evenly over this many seconds."""
TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Sizes:
    events: int = 20_000
    timers: int = 20_000
    pending: int = 1_000_000


async def run(
    settings: Settings, report: Report, rounds: int, progress: Progress, sizes: Sizes
) -> None:
    """Events rounds (orchestrator, then raw), then timers; each figure is the median round."""
    report.context["orchestrator_events"] = str(sizes.events)
    report.context["orchestrator_timers"] = str(sizes.timers)
    report.context["orchestrator_pending_timers"] = str(sizes.pending)
    await _events(settings, report, rounds, progress, sizes.events)
    await _timers(settings, report, rounds, progress, sizes)


# ---------------------------------------------------------------- events


async def _events(
    settings: Settings, report: Report, rounds: int, progress: Progress, events: int
) -> None:
    rates: dict[str, list[float]] = {}
    topics = OrchestratorTopics.prefixed(f"bench.{uuid.uuid4().hex[:10]}.")
    async with throwaway_database(settings) as dsn, throwaway_topics(settings, topics.all):
        await prepare_database(dsn)
        await _produce(settings, topics.touchpoints, events, progress)
        for round_ in range(1, rounds + 1):
            step = f"orchestrator: round {round_}/{rounds}"
            await _reset(dsn)
            rate, drained = await _orchestrator_round(settings, dsn, topics, events, progress, step)
            rates.setdefault("events", []).append(rate)
            rates.setdefault("drained", []).append(drained)
            await _reset(dsn)
            progress(f"{step}, raw consume + write")
            rates.setdefault("raw", []).append(await _raw_round(settings, dsn, topics, events))
    median = {name: statistics.median(values) for name, values in rates.items()}
    report.add("orchestrator.events_per_s", median["events"], "events/s")
    report.add("orchestrator.drained_s", median["drained"], "s")
    report.add("orchestrator.raw_consume_write.events_per_s", median["raw"], "events/s")
    report.add("orchestrator.ratio_to_raw", median["events"] / median["raw"], "ratio")


async def prepare_database(dsn: str) -> None:
    """Migrations and the benchmark journey on a fresh database."""
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await publish(conn, load_journey(JOURNEY), JOURNEY)
    finally:
        await conn.close()


def _lead(prospect: str) -> TouchpointEvent:
    return TouchpointEvent(
        prospect_id=prospect,
        type=TouchpointType.LEAD_CAPTURED,
        name="lead_captured",
        channel=Channel.PAID_SEARCH,
        occurred_at=datetime.now(UTC),
        source="bench",
        campaign=Campaign(source="google", medium="cpc", name="spring-sale"),
        properties={"form": "demo-request", "url": "https://shop.example/demo?plan=pro"},
    )


async def _produce(settings: Settings, topic: str, events: int, progress: Progress) -> None:
    run = uuid.uuid4().hex[:8]
    producer = Producer(settings, client_id="bench-orchestrator", timeout_s=30)
    await producer.start()
    try:
        for start in range(0, events, 2000):
            progress(f"orchestrator: producing {start:,}/{events:,} events")
            chunk = range(start, min(start + 2000, events))
            await producer.send_records([(topic, encode(_lead(f"bench-{run}-{i}"))) for i in chunk])
    finally:
        await producer.stop()


async def _reset(dsn: str) -> None:
    """The same empty tables (and no pending checkpoint work) before each measured phase."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "TRUNCATE processed_events, prospect_state, timers, journey_history,"
            " prospect_timeline, outbox RESTART IDENTITY"
        )
        with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _orchestrator_process(
    settings: Settings, dsn: str, topics: OrchestratorTopics
) -> AsyncIterator[asyncio.subprocess.Process]:
    prefix = topics.touchpoints.removesuffix(OrchestratorTopics().touchpoints)
    group = f"bench-orchestrator-{uuid.uuid4().hex[:8]}"
    argv = ("-m", "shared.bench.server", "orchestrator", str(free_port()), prefix, group)
    env = {
        **os.environ,
        "TRAYECTO_DATABASE_URL": dsn,
        "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TRAYECTO_LOG_LEVEL": "WARNING",
    }
    async with service_process(argv, env) as process:
        yield process


async def _orchestrator_round(
    settings: Settings,
    dsn: str,
    topics: OrchestratorTopics,
    events: int,
    progress: Progress,
    step: str,
) -> tuple[float, float]:
    """(events/s from the first processed event to the N-th, seconds until the outbox drained).

    The start is the last poll that saw nothing processed: the first batch's own time
    counts, the process start-up and the consumer group join do not.
    """
    conn = await asyncpg.connect(dsn)
    try:
        async with _orchestrator_process(settings, dsn, topics) as process:
            started = time.monotonic()
            idle_until = started
            processed_at: float | None = None
            while True:
                now = time.monotonic()
                count = int(await conn.fetchval("SELECT count(*) FROM processed_events"))
                if count == 0:
                    idle_until = now
                elif count >= events and processed_at is None:
                    processed_at = now
                if processed_at is not None:
                    backlog = await conn.fetchval(
                        "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                    )
                    if backlog == 0:
                        return events / (processed_at - idle_until), now - idle_until
                    progress(f"{step}, orchestrator: relaying, {backlog:,} outbox rows left")
                else:
                    progress(f"{step}, orchestrator: {count:,}/{events:,} events processed")
                if process.returncode is not None:
                    raise RuntimeError("the benchmark's orchestrator process exited")
                if now - started > TIMEOUT_S:
                    raise RuntimeError(f"the orchestrator processed {count} of {events} events")
                await asyncio.sleep(POLL_S)
    finally:
        await conn.close()


# ------------------------------------------------ raw limit: consume and write the same rows


_PROCESSED = (
    "INSERT INTO processed_events (consumer, event_id)"
    " SELECT $1, e FROM unnest($2::uuid[]) AS t(e)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)
_STATES = """
    INSERT INTO prospect_state (prospect_id, state, updated_at)
    SELECT p, s, now() FROM unnest($1::text[], $2::jsonb[]) AS t(p, s)
    ON CONFLICT (prospect_id) DO UPDATE SET state = EXCLUDED.state, updated_at = now()
"""
_TIMERS = """
    INSERT INTO timers (timer_id, prospect_id, run_id, journey, journey_version, step,
                        due_at, payload)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::int[],
                         $6::text[], $7::timestamptz[], $8::jsonb[])
    ON CONFLICT (timer_id) DO NOTHING
"""
_HISTORY = """
    INSERT INTO journey_history (event_id, prospect_id, journey, journey_version, persona,
        run_id, reason, from_stage, to_stage, step, variant, cause_event_id, occurred_at,
        send_outcome, held_by, deferred_until, exit_reason)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[],
        $6::uuid[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
        $12::uuid[], $13::timestamptz[], $14::text[], $15::text[], $16::timestamptz[],
        $17::text[])
    ON CONFLICT (event_id) DO NOTHING
"""
_TIMELINE = """
    INSERT INTO prospect_timeline (event_id, prospect_id, kind, type, name, channel,
                                   occurred_at, detail)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::timestamptz[], $8::jsonb[])
    ON CONFLICT (event_id) DO NOTHING
"""
_OUTBOX = """
    INSERT INTO outbox (topic, key, value, headers)
    SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[], $4::json[])
    RETURNING id
"""


async def _raw_round(
    settings: Settings, dsn: str, topics: OrchestratorTopics, events: int
) -> float:
    """Events/s of a bare consume → one transaction per batch → offset commit loop."""
    consumer = AIOKafkaConsumer(
        topics.touchpoints,
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=BATCH,
    )
    conn = await asyncpg.connect(dsn, server_settings={"timezone": "UTC"})
    try:
        await consumer.start()
        done, started = 0, 0.0
        deadline = time.monotonic() + TIMEOUT_S
        while done < events:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the raw consumer read {done} of {events} events")
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            records = [r for partition in batches.values() for r in partition]
            if not records:
                continue
            if not done:
                started = time.monotonic()
            await _raw_write(conn, records, topics)
            await consumer.commit()
            done += len(records)
        return done / (time.monotonic() - started)
    finally:
        await consumer.stop()
        await conn.close()


async def _raw_write(
    conn: asyncpg.Connection,
    records: list[ConsumerRecord[bytes, bytes]],
    topics: OrchestratorTopics,
) -> None:
    """The rows the orchestrator writes for these events, built from plain JSON."""
    now = datetime.now(UTC)
    ids: list[uuid.UUID] = []
    states: list[tuple[str, str]] = []
    timers: list[tuple[Any, ...]] = []
    history: list[tuple[Any, ...]] = []
    timeline: list[tuple[Any, ...]] = []
    outbox: list[tuple[str, bytes, bytes, str]] = []
    for record in records:
        event_id = uuid.UUID(dict(record.headers)[EVENT_ID_HEADER].decode())
        key = record.key or b""
        prospect = key.decode()
        event = json.loads(record.value or b"{}")
        run_id, timer_id = uuid.uuid4(), uuid.uuid4()
        ids.append(event_id)
        states.append((prospect, _state_json(prospect, run_id, timer_id, event, now)))
        timers.append((timer_id, prospect, run_id, JOURNEY_ID, 1, "pause",
                       now + timedelta(days=1), '{"kind": "wait"}'))  # fmt: skip
        campaign = {k: v for k, v in (event["campaign"] or {}).items() if v is not None}
        detail = {
            "properties": event["properties"],
            "campaign": campaign,
            "emotion": event["emotion"],
            "source": event["source"],
        }
        timeline.append((event_id, prospect, "touchpoint", event["type"], event["name"],
                         event["channel"], datetime.fromisoformat(event["occurred_at"]),
                         json.dumps(detail)))  # fmt: skip
        command = _command(prospect, now)
        outbox.append((topics.commands, key, json.dumps(command).encode(), _headers(command)))
        for reason, before, after, step, sent in (
            ("entered", None, "visitor", None, None),
            ("step", None, "visitor", "welcome", "sent"),
            ("step", "visitor", "visitor", "pause", None),
        ):
            history.append((uuid.uuid4(), prospect, JOURNEY_ID, 1, "bench", run_id, reason,
                            before, after, step, None, event_id, now, sent, None, None,
                            None))  # fmt: skip
            transition = _transition(history[-1])
            outbox.append(
                (topics.transitions, key, json.dumps(transition).encode(), _headers(transition))
            )
    async with conn.transaction():
        await conn.fetch(_PROCESSED, "orchestrator", ids)
        await conn.execute(_STATES, *_columns(states))
        await conn.execute(_TIMERS, *_columns(timers))
        await conn.execute(_HISTORY, *_columns(history))
        await conn.execute(_TIMELINE, *_columns(timeline))
        await conn.fetch(_OUTBOX, *_columns(outbox))


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def _state_json(
    prospect: str, run_id: uuid.UUID, timer_id: uuid.UUID, event: dict[str, Any], now: datetime
) -> str:
    """A document shaped and sized like the engine's state after the entry."""
    at = now.isoformat()
    run = {
        "run_id": str(run_id), "journey": JOURNEY_ID, "version": 1, "persona": "bench",
        "status": "active", "stage": "visitor", "step": "pause", "entered_at": at,
        "stage_entered_at": at, "step_entered_at": at,
        "waiting": {"step": "pause", "timer_id": str(timer_id),
                    "due_at": (now + timedelta(days=1)).isoformat(), "kind": "wait"},
        "variants": {}, "visits": {"welcome": 1, "pause": 1}, "skipped": {}, "number": 1,
        "exit_reason": None, "exited_at": None,
    }  # fmt: skip
    return json.dumps({
        "prospect_id": prospect, "traits": {},
        "facts": {"count.lead_captured": 1, "last_event_at": event["occurred_at"]},
        "runs": {JOURNEY_ID: run}, "sends": [at], "suppressed": [], "updated_at": at,
    })  # fmt: skip


def _command(prospect: str, now: datetime) -> dict[str, Any]:
    command_id = str(uuid.uuid4())
    return {
        "schema_version": 1, "event_id": command_id, "prospect_id": prospect,
        "kind": "delivery_command", "command_id": command_id, "journey": JOURNEY_ID,
        "journey_version": 1, "step": "welcome", "content": "welcome", "content_type": "email",
        "channel": "email", "variant": None, "locale": "es",
        "recipient": {"prospect_id": prospect}, "params": {}, "issued_at": now.isoformat(),
    }  # fmt: skip


def _transition(row: tuple[Any, ...]) -> dict[str, Any]:
    event_id, prospect, journey, version, persona, run_id, reason = row[:7]
    before, after, step, variant, cause, at, sent, held_by, deferred_until, exit_reason = row[7:]
    return {
        "schema_version": StageTransition.SCHEMA_VERSION, "event_id": str(event_id),
        "prospect_id": prospect, "kind": "stage_transition", "journey": journey,
        "journey_version": version,
        "persona": persona, "run_id": str(run_id), "from_stage": before, "to_stage": after,
        "step": step, "variant": variant, "cause_event_id": str(cause), "reason": reason,
        "occurred_at": at.isoformat(), "send_outcome": sent, "held_by": held_by,
        "deferred_until": deferred_until, "exit_reason": exit_reason,
    }  # fmt: skip


def _headers(message: dict[str, Any]) -> str:
    return json.dumps({
        "content-type": "application/json", "trayecto-type": message["kind"],
        "trayecto-schema-version": str(message["schema_version"]),
        EVENT_ID_HEADER: message["event_id"],
    })  # fmt: skip


# ---------------------------------------------------------------- timers


_ADD_TIMERS = """
    INSERT INTO timers (timer_id, prospect_id, run_id, journey, journey_version, step,
                        due_at, payload)
    SELECT gen_random_uuid(), $1::text || g, gen_random_uuid(), $2, 1, 'pause',
           now() + $3::interval + g * $4::interval, '{"kind": "wait"}'
    FROM generate_series(1, $5::int) AS g
"""
_RAW_CLAIM = """
    DELETE FROM timers t USING (
        SELECT timer_id FROM timers WHERE due_at <= now()
        ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
    ) due
    WHERE t.timer_id = due.timer_id
    RETURNING t.timer_id
"""
_LATENESS = """
    SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM
        (m->>'fired_at')::timestamptz - (m->>'due_at')::timestamptz))
    FROM (SELECT convert_from(value, 'UTF8')::jsonb AS m FROM outbox WHERE topic = $1) fired
"""


async def _add_timers(
    conn: asyncpg.Connection, name: str, count: int, offset: timedelta, step: timedelta
) -> None:
    """``count`` timers due from now + offset, one every ``step``."""
    await conn.execute(_ADD_TIMERS, f"bench-{name}-", JOURNEY_ID, offset, step, count)


async def _vacuum(conn: asyncpg.Connection) -> None:
    """No dead rows left by the previous phase (claimed timers) in the next one's way, and
    no checkpoint of its writes during the next one."""
    await conn.execute("VACUUM ANALYZE timers")
    await conn.execute("CHECKPOINT")


async def _timers(
    settings: Settings, report: Report, rounds: int, progress: Progress, sizes: Sizes
) -> None:
    topics = OrchestratorTopics.prefixed(f"bench.{uuid.uuid4().hex[:10]}.")
    rates: dict[str, list[float]] = {}
    async with throwaway_database(settings) as dsn:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        pool = await create_pool(settings, dsn=dsn)
        try:
            progress(f"timers: inserting {sizes.pending:,} pending timers")
            await _add_timers(conn, "far", sizes.pending, timedelta(days=30), timedelta(seconds=1))
            for round_ in range(1, rounds + 1):
                step = f"timers: round {round_}/{rounds}"
                await conn.execute("TRUNCATE outbox")
                await _vacuum(conn)
                lateness = await _lateness(conn, pool, topics, sizes.timers, progress, step)
                rates.setdefault("p50", []).append(lateness[0])
                rates.setdefault("p99", []).append(lateness[1])
                progress(f"{step}, claimer on {sizes.timers:,} due timers")
                await _add_timers(conn, "due", sizes.timers, timedelta(minutes=-1), _MS)
                await _vacuum(conn)
                rates.setdefault("fired", []).append(await _claim_backlog(pool, topics))
                progress(f"{step}, raw SKIP LOCKED on {sizes.timers:,} due timers")
                await _add_timers(conn, "due", sizes.timers, timedelta(minutes=-1), _MS)
                await _vacuum(conn)
                rates.setdefault("raw", []).append(await _raw_claim_backlog(conn))
        finally:
            await pool.close()
            await conn.close()
    median = {name: statistics.median(values) for name, values in rates.items()}
    report.add("orchestrator.timers.fired_per_s", median["fired"], "timers/s")
    report.add("orchestrator.timers.lateness_p50_s", median["p50"], "s")
    report.add("orchestrator.timers.lateness_p99_s", median["p99"], "s")
    report.add("orchestrator.timers.raw_skip_locked_per_s", median["raw"], "timers/s")
    report.add("orchestrator.timers.ratio_to_raw", median["fired"] / median["raw"], "ratio")


_MS = timedelta(milliseconds=1)


async def _lateness(
    conn: asyncpg.Connection,
    pool: asyncpg.Pool,
    topics: OrchestratorTopics,
    count: int,
    progress: Progress,
    step: str,
) -> tuple[float, float]:
    """p50 and p99 of fired_at - due_at while the service's claim loop runs."""
    claimer = asyncio.create_task(fire_forever(pool, topics, asyncio.Event()))
    try:
        await _add_timers(
            conn, "soon", count, timedelta(seconds=1), timedelta(seconds=SPREAD_S) / count
        )
        deadline = time.monotonic() + SPREAD_S + TIMEOUT_S
        while (fired := int(await conn.fetchval("SELECT count(*) FROM outbox"))) < count:
            progress(f"{step}, lateness: {fired:,}/{count:,} fired")
            if claimer.done() or time.monotonic() > deadline:
                raise RuntimeError(f"the timer claimer fired {fired} of {count} timers")
            await asyncio.sleep(POLL_S)
    finally:
        claimer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await claimer
    p50, p99 = await conn.fetchval(_LATENESS, topics.timers)
    return float(p50), float(p99)


async def _claim_backlog(pool: asyncpg.Pool, topics: OrchestratorTopics) -> float:
    """Timers/s of the claim loop as ``fire_forever`` runs it while timers are due."""
    fired, started = 0, time.monotonic()
    while True:
        async with pool.acquire() as conn:
            claimed = await claim_due(conn, topics)
        fired += claimed
        if claimed < CLAIM_BATCH:
            return fired / (time.monotonic() - started)


async def _raw_claim_backlog(conn: asyncpg.Connection) -> float:
    """Timers/s of the bare claim statement, nothing else done with the rows."""
    fired, started = 0, time.monotonic()
    while True:
        claimed = len(await conn.fetch(_RAW_CLAIM, CLAIM_BATCH))
        fired += claimed
        if claimed < CLAIM_BATCH:
            return fired / (time.monotonic() - started)
