"""End to end: HTTP accept at ingest → delivery command on Kafka, each next to its limit.

Ingest (one worker) and the orchestrator run as their own processes on a throwaway
database and topics, with the orchestrator benchmark's journey (a lead gets a welcome
email straight away). Every event is a new prospect's ``lead_captured``, so each one
must come out as exactly one delivery command, which this process consumes.

- **Sustained**: N events as fast as ingest takes them (``/v1/batch``, 500 per request,
  4 in flight), timed from the first request to the N-th delivery command; with one
  and then two orchestrator instances in the same consumer group.
- **Latency** at a fixed offered load: batches of 20 every 20 ms (1 000 events/s);
  per event, from sending its request to receiving its delivery command. The limit is
  the broker round trip at the same rate: a record produced (``acks=all``) and consumed
  back by the same process.
- **Memory**: peak resident set (``VmHWM``) of each service process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.ingest.sources import add_source
from services.orchestrator.topics import OrchestratorTopics
from shared.kafka.admin import topic_partitions
from shared.settings import Settings

from .ingest import ingest_server
from .orchestrator import prepare_database
from .report import Report
from .resources import free_port, service_process, throwaway_database, throwaway_topics

Progress = Callable[[str], None]
BATCH = 500
IN_FLIGHT = 4
TICK_S = 0.02
PER_TICK = 20


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _peak_rss_mb(pid: int) -> float:
    """Peak resident set of a process and its children (uvicorn workers), in MiB."""
    total = 0.0
    for each in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            found += [int(c) for c in text]
    return found + [g for c in found for g in _children(c)]


class _Commands:
    """Receive times of a topic's records by key (prospect), read from the end of the topic.

    ``seen``: when this process received the first record of each key (``time.time()``);
    ``created``: that record's Kafka timestamp (its producer's clock, the same machine's).
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","))
        self._topic = topic
        self._settings = settings
        self.seen: dict[str, float] = {}
        self.created: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Commands:
        await self._consumer.start()
        partitions = range((await topic_partitions(self._settings, [self._topic]))[self._topic])
        assigned = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(assigned)
        await self._consumer.seek_to_end(*assigned)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for records in batches.values():
                for r in records:
                    key = (r.key or b"").decode()
                    if key not in self.seen:
                        self.seen[key] = now
                        self.created[key] = r.timestamp / 1000

    async def wait_for(self, count: int, timeout_s: float) -> float:
        deadline = time.time() + timeout_s
        while len(self.seen) < count:
            if time.time() > deadline:
                raise RuntimeError(f"only {len(self.seen)} of {count} delivery commands came")
            await asyncio.sleep(0.02)
        return max(self.seen.values())

    async def wait_for_all(self, keys: Iterable[str], timeout_s: float) -> None:
        deadline = time.time() + timeout_s
        for key in keys:
            while key not in self.seen:
                if time.time() > deadline:
                    raise RuntimeError(f"no delivery command for {key} within {timeout_s:g}s")
                await asyncio.sleep(0.02)

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


def _call(prospect: str) -> dict[str, object]:
    return {
        "type": "track",
        "userId": prospect,
        "event": "lead_captured",
        "messageId": prospect,
        "properties": {"form": "demo-request"},
        "context": {"campaign": {"name": "bench", "source": "google", "medium": "cpc"}},
    }


@contextlib.asynccontextmanager
async def _platform(
    settings: Settings, dsn: str, topics: OrchestratorTopics, orchestrators: int
) -> AsyncIterator[tuple[httpx.AsyncClient, list[int]]]:
    """Ingest and the orchestrator(s) in their own processes; a client with the write key."""
    conn = await asyncpg.connect(dsn)
    try:
        key = (await add_source(conn, "bench", rate_limit=10_000_000)).write_key
    finally:
        await conn.close()
    env = {**os.environ, "TRAYECTO_DATABASE_URL": dsn, "TRAYECTO_LOG_LEVEL": "WARNING",
           "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}  # fmt: skip
    prefix = topics.touchpoints.removesuffix(OrchestratorTopics().touchpoints)
    group = f"bench-e2e-{uuid.uuid4().hex[:8]}"
    async with contextlib.AsyncExitStack() as stack:
        url, ingest = await stack.enter_async_context(ingest_server(dsn, topics.touchpoints, 1))
        pids = [ingest.pid]
        for _ in range(orchestrators):
            argv = ("-m", "shared.bench.server", "orchestrator", str(free_port()), prefix, group)
            pids.append((await stack.enter_async_context(service_process(argv, env))).pid)
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=url, headers={"Authorization": auth}, timeout=60)
        )
        yield client, pids


async def _post(client: httpx.AsyncClient, calls: list[dict[str, object]]) -> None:
    response = await client.post("/v1/batch", json={"batch": calls})
    if response.status_code != 200:
        raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:200]}")


async def _sustained(client: httpx.AsyncClient, commands: _Commands, events: int) -> float:
    run = uuid.uuid4().hex[:8]
    names = [f"s-{run}-{i}" for i in range(events)]
    chunks = [names[i : i + BATCH] for i in range(0, events, BATCH)]
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def send(chunk: list[str]) -> None:
        async with limit:
            await _post(client, [_call(n) for n in chunk])

    before = len(commands.seen)
    started = time.time()
    await asyncio.gather(*(send(c) for c in chunks))
    last = await commands.wait_for(before + events, timeout_s=300)
    return events / (last - started)


@dataclass
class _Latency:
    """Per event of the latency phase, in ms: the whole path and its three legs."""

    total: list[float]
    ingest: list[float]
    """Request sent → ingest's HTTP answer (Kafka acknowledged the touchpoint)."""
    orchestrator: list[float]
    """Touchpoint record created → delivery command record created (consume, transaction,
    relay)."""
    delivery_topic: list[float]
    """Delivery command record created → received here."""


async def _latency(
    client: httpx.AsyncClient, commands: _Commands, touchpoints: _Commands, seconds: float
) -> _Latency:
    run = uuid.uuid4().hex[:8]
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    tasks = []

    async def post(names: list[str]) -> None:
        await _post(client, [_call(n) for n in names])
        answered.update(dict.fromkeys(names, time.time()))

    started = time.time()
    for tick in range(int(seconds / TICK_S)):
        await asyncio.sleep(max(0.0, started + tick * TICK_S - time.time()))
        names = [f"l-{run}-{tick}-{i}" for i in range(PER_TICK)]
        now = time.time()
        sent.update(dict.fromkeys(names, now))
        tasks.append(asyncio.create_task(post(names)))
    await asyncio.gather(*tasks)
    await commands.wait_for_all(sent, timeout_s=60)
    await touchpoints.wait_for_all(sent, timeout_s=60)
    ms = 1000
    return _Latency(
        total=[(commands.seen[n] - at) * ms for n, at in sent.items()],
        ingest=[(answered[n] - at) * ms for n, at in sent.items()],
        orchestrator=[(commands.created[n] - touchpoints.created[n]) * ms for n in sent],
        delivery_topic=[(commands.seen[n] - commands.created[n]) * ms for n in sent],
    )


async def _broker_round_trip(settings: Settings, topic: str, seconds: float) -> list[float]:
    """The limit: produce (acks=all, idempotent) and consume back, at the same rate."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        async with _Commands(settings, topic) as back:
            sent: dict[str, float] = {}
            started = time.time()
            for tick in range(int(seconds / TICK_S)):
                await asyncio.sleep(max(0.0, started + tick * TICK_S - time.time()))
                for i in range(PER_TICK):
                    key = f"r-{tick}-{i}"
                    sent[key] = time.time()
                    await producer.send(topic, b"{}", key=key.encode())
            await back.wait_for(len(sent), timeout_s=60)
            return [(back.seen[k] - at) * 1000 for k, at in sent.items()]
    finally:
        await producer.stop()


async def run(
    settings: Settings, report: Report, seconds: float, events: int, progress: Progress
) -> None:
    topics = OrchestratorTopics.prefixed(f"bench.{uuid.uuid4().hex[:10]}.")
    echo = f"bench.{uuid.uuid4().hex[:10]}.echo"
    report.context["e2e_events"] = str(events)
    report.context["e2e_offered_load"] = f"{PER_TICK / TICK_S:g} events/s"
    rates: dict[int, float] = {}
    async with throwaway_topics(settings, [*topics.all, echo]):
        for orchestrators in (1, 2):
            async with throwaway_database(settings) as dsn:
                await prepare_database(dsn)
                async with (
                    _Commands(settings, topics.commands) as commands,
                    _Commands(settings, topics.touchpoints) as touchpoints,
                    _platform(settings, dsn, topics, orchestrators) as (client, pids),
                ):
                    progress(f"end to end: warming up, {orchestrators} orchestrator(s)")
                    await _sustained(client, commands, min(events, 2000))
                    progress(f"end to end: {events:,} events, {orchestrators} orchestrator(s)")
                    rates[orchestrators] = await _sustained(client, commands, events)
                    if orchestrators == 1:
                        progress(f"end to end: latency at 1 000 events/s for {seconds:g}s")
                        latency = await _latency(client, commands, touchpoints, seconds)
                        names = ("ingest", "orchestrator")
                        for name, pid in zip(names, pids, strict=False):
                            report.add(f"e2e.memory.{name}_peak_rss_mib", _peak_rss_mb(pid), "MiB")
        progress(f"end to end: broker round trip for {seconds:g}s")
        broker = await _broker_round_trip(settings, echo, seconds)
    report.add("e2e.sustained.events_per_s", rates[1], "events/s")
    report.add("e2e.sustained_2_orchestrators.events_per_s", rates[2], "events/s")
    report.add("e2e.scaling_1_to_2_orchestrators", rates[2] / rates[1], "ratio")
    for q in (50, 99):
        report.add(f"e2e.latency.p{q}_ms", _percentile(latency.total, q / 100), "ms")
        report.add(f"e2e.broker_round_trip.p{q}_ms", _percentile(broker, q / 100), "ms")
        for leg in ("ingest", "orchestrator", "delivery_topic"):
            values = getattr(latency, leg)
            report.add(f"e2e.latency.{leg}_p{q}_ms", _percentile(values, q / 100), "ms")
    report.add(
        "e2e.latency.ratio_broker_p99_to_e2e_p99",
        _percentile(broker, 0.99) / _percentile(latency.total, 0.99),
        "ratio",
    )
