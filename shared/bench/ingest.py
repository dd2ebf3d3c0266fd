"""Ingest throughput (single ``track`` and ``batch``) next to the raw aiokafka producer rate.

Everything runs on this machine against the running stack: the ingest service in its
own process on a throwaway database and topic, the load generator here, and then a
bare aiokafka producer (same acks and idempotence, same record size) on the same broker.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from services.ingest import normalise
from services.ingest.segment import Track
from services.ingest.sources import add_source
from shared.db import migrate
from shared.kafka.codec import Record, encode
from shared.kafka.producer import Producer
from shared.settings import Settings

from .report import Report
from .resources import free_port, service_process, throwaway_database, throwaway_topics
from .wrk import run_wrk, wrk_binary

Progress = Callable[[str], None]
WARM_UP_S = 60.0


def _call(n: int, run: str) -> dict[str, object]:
    return {
        "type": "track",
        "userId": f"bench-{n % 5000}",
        "event": "Page Viewed",
        "messageId": f"{run}-{n}",
        "timestamp": datetime.now(UTC).isoformat(),
        "properties": {"url": "https://shop.example/pricing?plan=pro", "title": "Pricing"},
        "context": {
            "campaign": {"source": "google", "medium": "cpc", "name": "spring-sale"},
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130",
            "ip": "203.0.113.7",
        },
    }


@contextlib.asynccontextmanager
async def ingest_server(
    dsn: str, topic: str, workers: int
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """Ingest in its own process(es) on ``dsn`` publishing to ``topic``, once healthy."""
    port = free_port()
    env = {**os.environ, "TRAYECTO_DATABASE_URL": dsn, "TRAYECTO_LOG_LEVEL": "WARNING"}
    argv = ("-m", "shared.bench.server", "ingest", str(port), topic, str(workers))
    async with _healthy(argv, env, port, "ingest") as served:
        yield served


@contextlib.asynccontextmanager
async def _healthy(
    argv: tuple[str, ...], env: dict[str, str], port: int, name: str
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    url = f"http://127.0.0.1:{port}"
    async with service_process(argv, env) as process, httpx.AsyncClient(base_url=url) as client:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/healthz")).status_code == 200:
                    break
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the benchmark's {name} server did not become healthy")
            await asyncio.sleep(0.2)
        yield url, process


async def _stored(dsn: str) -> int:
    """Events accepted so far: one messageId row each, written only once Kafka acked."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM ingest_messages"))
    finally:
        await conn.close()


def _raw_record() -> Record:
    call = Track.model_validate(_call(0, "raw"))
    received = normalise.Received("bench", 1, datetime.now(UTC), timedelta(minutes=5))
    return encode(normalise.touchpoint(call, "raw-0", received, {}))


async def _raw_send(settings: Settings, topic: str, seconds: float) -> int:
    """Records sent by a bare producer, one ``send()`` per record (aiokafka's usual path)."""
    record = _raw_record()
    headers = [(k, v.encode()) for k, v in record.headers.items()]
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    sent = 0
    try:
        stop_at = time.monotonic() + seconds
        while time.monotonic() < stop_at:
            futures = [
                await producer.send(
                    topic, record.value, key=f"bench-{i % 5000}".encode(), headers=headers
                )
                for i in range(2000)
            ]
            await asyncio.gather(*futures)
            sent += len(futures)
    finally:
        await producer.stop()
    return sent


async def _raw_batches(settings: Settings, topic: str, seconds: float) -> int:
    """Records sent through aiokafka's batch API, as ingest sends: nothing else done."""
    record = _raw_record()
    records = [
        (topic, Record(f"bench-{i % 5000}".encode(), record.value, record.headers))
        for i in range(2000)
    ]
    producer = Producer(settings, client_id="bench-raw", timeout_s=30)
    await producer.start()
    sent = 0
    try:
        stop_at = time.monotonic() + seconds
        while time.monotonic() < stop_at:
            await producer.send_records(records)
            sent += len(records)
    finally:
        await producer.stop()
    return sent


async def run(
    settings: Settings, report: Report, seconds: float, rounds: int, progress: Progress
) -> None:
    """Rounds of (single, batch, raw send, raw batch API); each figure is the median round."""
    topic = f"bench.touchpoints.{uuid.uuid4().hex[:10]}"
    async with throwaway_database(settings) as dsn, throwaway_topics(settings, [topic]):
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            key = (await add_source(conn, "bench", rate_limit=10_000_000)).write_key
        finally:
            await conn.close()
        wrk = wrk_binary(settings)
        authorization = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        workers = os.cpu_count() or 1
        report.context["ingest_workers"] = str(workers)
        rates: dict[str, list[float]] = {}
        failed: dict[str, int] = {"single": 0, "batch": 0}
        floor_port = free_port()
        floor_argv = ("-m", "shared.bench.server", "http-floor", str(floor_port), str(workers))
        async with (
            ingest_server(dsn, topic, workers) as (url, _),
            _healthy(floor_argv, dict(os.environ), floor_port, "HTTP floor") as (floor_url, _),
        ):
            with tempfile.TemporaryDirectory() as tmp:

                async def load(name: str, batch: int, connections: int, secs: float) -> None:
                    before = await _stored(dsn)
                    result = await run_wrk(
                        wrk, url, authorization, batch=batch, connections=connections,
                        seconds=secs, run=f"{name}-{uuid.uuid4().hex[:8]}", workdir=Path(tmp),
                    )  # fmt: skip
                    rates.setdefault(name, []).append(
                        (await _stored(dsn) - before) / result.seconds
                    )
                    failed[name] = failed.get(name, 0) + result.failed

                progress("ingest: warming up")
                # Until events are stored: a broker that is still loading its partitions
                # (just restarted with many topics) serves a new topic only after a while.
                deadline = time.monotonic() + WARM_UP_S
                await load("warm", 1, 8, 2)
                while await _stored(dsn) == 0 and time.monotonic() < deadline:
                    await load("warm", 1, 8, 2)
                for round_ in range(1, rounds + 1):
                    for name, batch, connections in (("single", 1, 32), ("batch", 100, 8)):
                        progress(f"ingest: round {round_}/{rounds}, {name}, {seconds:.0f}s")
                        await load(name, batch, connections, seconds)
                    progress(f"ingest: round {round_}/{rounds}, HTTP floor, {seconds:.0f}s")
                    floor = await run_wrk(
                        wrk, floor_url, authorization, batch=1, connections=32, seconds=seconds,
                        run=f"floor-{uuid.uuid4().hex[:8]}", workdir=Path(tmp),
                    )  # fmt: skip
                    if floor.failed:
                        raise RuntimeError(f"the HTTP floor failed {floor.failed} requests")
                    rates.setdefault("http_floor", []).append(floor.requests / floor.seconds)
                    for name, measure in (("raw_send", _raw_send), ("raw_batch_api", _raw_batches)):
                        progress(f"ingest: round {round_}/{rounds}, {name.replace('_', ' ')}")
                        started = time.monotonic()
                        sent = await measure(settings, topic, seconds)
                        rates.setdefault(name, []).append(sent / (time.monotonic() - started))
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name in ("single", "batch"):
        report.add(f"ingest.{name}.events_per_s", median[name], "events/s")
        report.add(f"ingest.{name}.failed_requests", failed[name], "requests")
    for name in ("raw_send", "raw_batch_api"):
        report.add(f"ingest.{name}.records_per_s", median[name], "records/s")
    report.add("ingest.http_floor.requests_per_s", median["http_floor"], "requests/s")
    for name in ("single", "batch"):
        for limit in ("raw_send", "raw_batch_api"):
            report.add(f"ingest.{name}.ratio_to_{limit}", median[name] / median[limit], "ratio")
    report.add(
        "ingest.single.ratio_to_http_floor", median["single"] / median["http_floor"], "ratio"
    )
