"""PostgreSQL restarted under a running flow, a connection killed, and a full disk.

All but the single-connection test run on a private PostgreSQL server
(``private_postgres``), never on the shared one, with the services as OS processes on
the shared Kafka (throwaway topics).

Restart: the orchestrator, delivery and metrics services process a bounded lead flow
while PostgreSQL is shut down (fast) and later killed (``kill -9`` of the postmaster),
a few seconds down each time. The processes must ride it out (never exit): pools
reconnect, a failed batch is retried or redelivered, and in the end every event is
processed exactly once, each lead has one delivery command, and the SMTP server holds
exactly the messages recorded as sent (a delivery whose hand-off mark was committed
but not acknowledged stays in doubt, never resent). Ingest answers 503 with
Retry-After while the database is unreachable and accepts the client's retry after.

Disk full: the database lives in a tablespace on a small tmpfs that is then filled, so
PostgreSQL's writes fail with "could not extend file ... No space left on device". The
write-ahead log stays on the ordinary disk: a full WAL disk makes PostgreSQL PANIC and
restart by design, which the restart test covers already. The orchestrator must keep
retrying the same batch with a pause (no hot loop, no exit), commit no Kafka offset
ahead of the database, and once space is freed process every event exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.ingest import create_app as ingest_app
from services.ingest.sources import add_source
from shared.contract import DeliveryOutcome, DeliveryStatus
from shared.db import create_pool, migrate
from shared.kafka import delete_topics
from shared.kafka.producer import Producer
from shared.settings import Settings
from shared.topics import ALL_TOPICS

from .delivery.smtp_server import SmtpServer
from .faults import (
    Flow,
    check_exactly_once,
    committed_offsets,
    end_offsets,
    identify,
    lead,
)
from .ingest.conftest import free_port, read_topic, serve
from .private_postgres import PrivatePostgres, tmpfs

PROSPECTS = 500
"""Each an identify (the email address) then a lead_captured: 1 000 events."""
CHUNK = 20
DOWN_S = 2.5
LEASE_S = 20
FAILED_BATCH = "batch transaction failed; retrying"


@pytest.fixture
async def flow(private_postgres: PrivatePostgres) -> AsyncIterator[Flow]:
    await migrate(private_postgres.dsn)  # what `trayecto db migrate` runs
    prepared = await Flow.prepare(private_postgres.settings)
    yield prepared
    await prepared.stop()
    await delete_topics(prepared.settings, [prepared.prefix + name for name in ALL_TOPICS])


def _ingest_batch(prospect: str) -> dict[str, object]:
    return {
        "batch": [
            {
                "type": "identify",
                "userId": prospect,
                "traits": {"email": f"{prospect}@example.com"},
                "messageId": f"{prospect}-identify",
            },
            {
                "type": "track",
                "userId": prospect,
                "event": "Lead Created",
                "messageId": f"{prospect}-lead",
            },
        ]
    }


async def _refused_while_down(client: httpx.AsyncClient, prospect: str) -> None:
    answer = await client.post("/v1/batch", json=_ingest_batch(prospect))
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) > 0
    assert answer.json()["error"] == "unavailable"


async def _accepted(client: httpx.AsyncClient, prospect: str, timeout_s: float = 30) -> None:
    """The client's retry, as Retry-After tells it, until ingest accepts the request."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (
        answer := await client.post("/v1/batch", json=_ingest_batch(prospect))
    ).status_code != 200:
        assert answer.status_code == 503, answer.text
        assert asyncio.get_running_loop().time() < deadline, "ingest did not recover"
        await asyncio.sleep(0.5)


async def test_postgres_restarted_mid_batch(
    private_postgres: PrivatePostgres, flow: Flow, tmp_path: Path
) -> None:
    started = time.monotonic()
    settings = flow.settings
    run = uuid.uuid4().hex[:6]
    prospects = [f"pr{i}-{run}" for i in range(PROSPECTS)]
    through_ingest = [f"pr-ingest{i}-{run}" for i in range(2)]
    with SmtpServer() as smtp:
        services = [
            await flow.start("orchestrator", tmp_path),
            await flow.start(
                "delivery",
                tmp_path,
                TRAYECTO_SMTP_URL=smtp.url,
                TRAYECTO_DELIVERY_RATE_LIMITS="email=2000",
                TRAYECTO_DELIVERY_CONCURRENCY="16",
                # Claims cut short by an outage are retried once this old (default 120 s);
                # a sent message is recorded as such for up to half of it.
                TRAYECTO_DELIVERY_LEASE_S=str(LEASE_S),
            ),
            await flow.start("metrics", tmp_path),
        ]
        conn = await asyncpg.connect(private_postgres.dsn)
        try:
            key = (await add_source(conn, "faults")).write_key
        finally:
            await conn.close()
        port = free_port()
        server, serving = await serve(
            ingest_app(settings, touchpoints_topic=flow.topics.touchpoints), port
        )
        producer = Producer(settings, client_id="test", timeout_s=10)
        await producer.start()
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", auth=(key, ""), timeout=30
            ) as client:

                async def feed() -> None:
                    for i in range(0, PROSPECTS, CHUNK):
                        chunk = prospects[i : i + CHUNK]
                        await producer.send(
                            flow.topics.touchpoints,
                            [e for p in chunk for e in (identify(p), lead(p))],
                        )
                        await asyncio.sleep(0.5)

                def failed_batches() -> int:
                    return flow.services["orchestrator"].log.read_text().count(FAILED_BATCH)

                feeding = asyncio.create_task(feed())
                await asyncio.sleep(1.5)
                await asyncio.to_thread(private_postgres.stop)  # fast shutdown
                await _refused_while_down(client, through_ingest[0])
                await asyncio.sleep(DOWN_S)
                # A batch came while the database was down, and is being retried.
                after_stop = failed_batches()
                assert after_stop > 0, "no batch hit the fast shutdown"
                await asyncio.to_thread(private_postgres.start)
                await _accepted(client, through_ingest[0])
                await asyncio.sleep(1.5)
                assert not feeding.done(), "the flow ended before the second fault"
                await asyncio.to_thread(private_postgres.kill)  # kill -9 of the postmaster
                await _refused_while_down(client, through_ingest[1])
                await asyncio.sleep(DOWN_S)
                after_kill = failed_batches()
                assert after_kill > after_stop, "no batch hit the kill -9"
                await asyncio.to_thread(private_postgres.start)  # crash recovery
                await _accepted(client, through_ingest[1])
                await feeding
        finally:
            await producer.stop()
            server.should_exit = True
            await serving

        everyone = prospects + through_ingest
        events = 2 * len(everyone)

        async def settled() -> bool:
            done = await flow.fetchval(
                "SELECT count(*) FROM deliveries WHERE status NOT IN"
                " ('pending', 'sending', 'handing_off')"
            )
            return (
                await flow.exited_runs() == len(everyone)
                and done == len(everyone)
                and await flow.unpublished() == 0
            )

        await flow.until("every lead through the journey and delivery", settled, 90)
        final = await read_topic(settings, flow.topics.outcomes, len(everyone), timeout_s=20)
        outcomes = [m for m in final if isinstance(m, DeliveryOutcome)]

        async def outcomes_consumed() -> bool:
            processed = await flow.fetchval(
                "SELECT count(*) FROM processed_events WHERE consumer = 'orchestrator'"
            )
            return processed == events + len({o.event_id for o in outcomes})

        await flow.until("the outcomes back at the orchestrator", outcomes_consumed, 30)
        accounting = await check_exactly_once(flow, everyone, events, outcomes)

        # Delivery: one row per command, each at the SMTP server at most once, and what
        # the server has is exactly what is recorded as sent (a hand-off is recorded
        # through the outage, not reported in doubt).
        rows = await flow.fetch("SELECT command_id, status FROM deliveries")
        assert len(rows) == len(everyone)
        at_server = smtp.inbox.by_message_id()
        assert max(at_server.values()) == 1
        sent = {f"<{r['command_id']}@trayecto>" for r in rows if r["status"] == "sent"}
        assert sent == set(at_server)
        statuses = {o.status for o in outcomes}
        assert DeliveryStatus.SENT in statuses

        # Metrics: every record of the counted topics seen once, every event counted once
        # (a copy re-published by an outbox relay is seen as a duplicate).
        distinct = {
            flow.topics.touchpoints: accounting.distinct_events,
            flow.topics.outcomes: len({o.event_id for o in outcomes}),
            flow.topics.transitions: accounting.distinct_transitions,
        }

        async def metrics_caught_up() -> bool:
            sizes = await end_offsets(settings, list(distinct))
            rows = await flow.fetch(
                "SELECT labels->>'topic' AS topic, labels->>'outcome' = 'duplicate' AS copy,"
                " sum(value)::bigint AS n FROM metric_counters"
                " WHERE name = 'trayecto_metrics_events_total' GROUP BY 1, 2"
            )
            seen = {t: sum(r["n"] for r in rows if r["topic"] == t) for t in distinct}
            once = {
                t: sum(r["n"] for r in rows if r["topic"] == t and not r["copy"]) for t in distinct
            }
            return seen == sizes and once == distinct

        await flow.until("metrics counting every event once", metrics_caught_up, 30)

        # No crash loop: the processes started before the faults never exited.
        for service in services:
            assert service.alive, f"{service.name} exited:\n{service.tail()}"
    print(
        f"\nrestart: events={events} distinct_on_topic={accounting.distinct_events}"
        f" processed={accounting.processed} commands_on_topic={accounting.commands_on_topic}"
        f" distinct_commands={accounting.distinct_commands}"
        f" transitions_on_topic={accounting.transitions_on_topic}"
        f" distinct_transitions={accounting.distinct_transitions}"
        f" smtp_messages={sum(at_server.values())} sent={len(sent)}"
        f" in_doubt={sum(1 for r in rows if r['status'] == 'in_doubt')}"
        f" outcomes={len(outcomes)} failed_batches={after_stop}+{after_kill - after_stop}"
        f" runtime={time.monotonic() - started:.1f}s"
    )


# ---------------------------------------------------------------- one connection


async def _terminated_by_its_statement(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TABLE t (n int)")
        await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")


async def _terminated_while_waiting(pool: asyncpg.Pool, admin: asyncpg.Connection) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TABLE t (n int)")
        await admin.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
        await asyncio.sleep(0.2)
        await conn.execute("INSERT INTO t VALUES (1)")


async def test_a_connection_terminated_under_the_pool_is_a_postgres_error(
    settings: Settings, fresh_database: str
) -> None:
    """What the services' retry loops catch (``PostgresError``) is what a dead connection
    raises, however asyncpg notices it (plain asyncpg raises ``InterfaceError`` here);
    and the pool goes on with new connections."""
    pool = await create_pool(settings, dsn=fresh_database)
    admin = await asyncpg.connect(fresh_database)
    try:
        with pytest.raises(asyncpg.PostgresError):
            await _terminated_by_its_statement(pool)
        assert await pool.fetchval("SELECT 1") == 1
        with pytest.raises(asyncpg.PostgresError):
            await _terminated_while_waiting(pool, admin)
        assert await pool.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 't'") == 0
        # Terminated while idle in the pool: the next user gets a working connection.
        async with pool.acquire() as conn:
            idle = conn.get_server_pid()
        await admin.execute("SELECT pg_terminate_backend($1)", idle)
        await asyncio.sleep(0.2)
        assert await pool.fetchval("SELECT pg_backend_pid()") != idle
    finally:
        await admin.close()
        await pool.close()


# ---------------------------------------------------------------- disk full

FULL_BEFORE = 100
FULL_DURING = 300


@pytest.fixture
def full_disk(private_postgres: PrivatePostgres) -> Iterator[Path]:
    """A small tmpfs for a tablespace; the server is stopped before it is unmounted."""
    with contextlib.ExitStack() as stack:
        try:
            mounted = stack.enter_context(
                tmpfs(private_postgres.settings.stack_dir / "tablespace", "24m")
            )
        except PermissionError as exc:
            pytest.skip(f"cannot mount a tmpfs to fill: {exc}")
        stack.callback(private_postgres.stop)  # before the unmount: it holds files there
        yield mounted


def _fill(directory: Path) -> Path:
    """A file that takes every free byte of the file system."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            block = b"\0" * size
            with contextlib.suppress(OSError):
                while os.write(fd, block):
                    pass
    finally:
        os.close(fd)
    assert filler.stat().st_size > 0
    with pytest.raises(OSError, match="No space left") as full:
        (directory / "probe").write_bytes(b"\0")
    assert full.value.errno == errno.ENOSPC
    (directory / "probe").unlink(missing_ok=True)
    return filler


async def test_disk_full_then_freed(
    private_postgres: PrivatePostgres, full_disk: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    admin = await asyncpg.connect(private_postgres.dsn)
    try:
        await admin.execute(f"CREATE TABLESPACE filling LOCATION '{full_disk}'")
        await admin.execute('CREATE DATABASE "faults" TABLESPACE filling')
    finally:
        await admin.close()
    base, _, _ = private_postgres.dsn.rpartition("/")
    settings: Settings = private_postgres.settings.model_copy(
        update={"database_url": f"{base}/faults"}
    )
    await migrate(settings.database_url)
    flow = await Flow.prepare(settings)
    run = uuid.uuid4().hex[:6]
    prospects = [f"full{i}-{run}" for i in range(FULL_BEFORE + FULL_DURING)]
    producer = Producer(settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        orchestrator = await flow.start("orchestrator", tmp_path)
        await producer.send(flow.topics.touchpoints, [lead(p) for p in prospects[:FULL_BEFORE]])

        async def first_part_done() -> bool:
            return await flow.exited_runs() == FULL_BEFORE

        await flow.until("the events before the disk filled", first_part_done, 30)
        filler = _fill(full_disk)
        await producer.send(flow.topics.touchpoints, [lead(p) for p in prospects[FULL_BEFORE:]])

        async def refused() -> bool:
            return "No space left on device" in orchestrator.log.read_text(errors="replace")

        await flow.until("PostgreSQL refusing writes", refused, 30)
        failures_before = orchestrator.log.read_text().count(FAILED_BATCH)
        held = time.monotonic()
        await asyncio.sleep(4)
        log = orchestrator.log.read_text()
        # A clear error, and retries with a pause between them (no hot loop).
        assert 'DiskFullError: could not extend file "pg_tblspc/' in log
        retries = log.count(FAILED_BATCH) - failures_before
        assert 1 <= retries <= (time.monotonic() - held) + 2, retries
        assert orchestrator.alive
        # Nothing half-applied meanwhile: what is processed has its state and timeline.
        processed = await flow.fetchval(
            "SELECT count(*) FROM processed_events WHERE consumer = 'orchestrator'"
        )
        assert isinstance(processed, int)
        assert processed < len(prospects), "the full disk refused no write"
        assert await flow.fetchval("SELECT count(*) FROM prospect_state") == processed
        assert await flow.fetchval("SELECT count(*) FROM prospect_timeline") == processed
        # Offsets are committed only after the database: never ahead of it.
        committed = await committed_offsets(settings, orchestrator.group, flow.topics.touchpoints)
        assert committed <= processed, (committed, processed)
        stalled_at = processed

        filler.unlink()

        async def all_done() -> bool:
            return await flow.exited_runs() == len(prospects) and await flow.unpublished() == 0

        await flow.until("every event once space is back", all_done, 60)
        accounting = await check_exactly_once(flow, prospects, len(prospects))
        assert orchestrator.alive, orchestrator.tail()  # the same process throughout

        async def offsets_committed() -> bool:
            topic = flow.topics.touchpoints
            return await committed_offsets(settings, orchestrator.group, topic) == len(prospects)

        await flow.until("the offsets committed", offsets_committed, 20)
    finally:
        await producer.stop()
        await flow.stop()
        await delete_topics(settings, [flow.prefix + name for name in ALL_TOPICS])
    print(
        f"\ndisk full: events={len(prospects)} processed={accounting.processed}"
        f" stalled_at={stalled_at} committed_at_stall={committed} retries_in_4s={retries}"
        f" commands_on_topic={accounting.commands_on_topic}"
        f" distinct_commands={accounting.distinct_commands}"
        f" runtime={time.monotonic() - started:.1f}s"
    )
