"""What the fault tests share: services as OS processes, a lead flow, and its accounting.

The services run as ``trayecto serve`` runs them (``shared.bench.server``; the metrics
service through its crash-test entry point), each in its own process with its log in a
file, on throwaway topics under one prefix and on the test's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from services.orchestrator.topics import OrchestratorTopics
from shared.contract import (
    Channel,
    DeliveryCommand,
    IdentifyEvent,
    StageTransition,
    TouchpointEvent,
    TouchpointType,
    WireMessage,
)
from shared.kafka import ensure_topics, topic_partitions
from shared.settings import Settings
from shared.topics import ALL_TOPICS

from .ingest.conftest import free_port, read_topic
from .names import topic_prefix

ROOT = Path(__file__).resolve().parents[2]
JOURNEY_ID = "faults-welcome"
JOURNEY = f"""
journey: {JOURNEY_ID}
title: One welcome email per lead
persona: {{id: tester}}
entry: {{event: lead_captured}}
steps:
  - id: welcome
    send: {{content: it-welcome}}
  - id: done
    exit: completed
"""
EXPECTED_HISTORY = Counter(
    {("entered", None), ("step", "welcome"), ("step", "done"), ("exited", "done")}
)
"""(reason, step) of the transitions one run of the journey records, each once."""


class ServiceProcess:
    """One service in its own OS process (``python -m`` ``argv``, ``{port}`` replaced),
    its output appended to ``log``; it keeps its port when started again after a kill."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        *,
        group: str = "",
        port: int | None = None,
    ) -> None:
        self.name = name
        self.group = group
        self.port = port or free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.env = dict(env)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        assert not self.alive, f"{self.name} is running"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.argv],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def ready(self, timeout_s: float = 60.0) -> None:
        """Until ``/livez`` answers (the lifespan, pool and consumers are up)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while True:
                assert self.alive, f"{self.name} exited while starting:\n{self.tail()}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/livez")).status_code == 200:
                        return
                assert loop.time() < deadline, f"{self.name} not ready:\n{self.tail()}"
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        assert self.process is not None
        assert self.alive, f"{self.name} is down"
        self.process.send_signal(signal.SIGKILL)
        code = await asyncio.to_thread(self.process.wait, 10)
        assert code == -signal.SIGKILL, code

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.alive:
            self.process.terminate()
        try:
            await asyncio.to_thread(self.process.wait, 30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 10)


@dataclass
class Flow:
    """A database, topics under one prefix and the services started on them."""

    settings: Settings
    prefix: str
    topics: OrchestratorTopics
    services: dict[str, ServiceProcess]

    @classmethod
    async def prepare(cls, settings: Settings) -> Flow:
        """Topics and the journey; the database is migrated already."""
        prefix = topic_prefix("faults")
        await ensure_topics(settings, [prefix + name for name in ALL_TOPICS], partitions=3)
        conn = await asyncpg.connect(settings.database_url)
        try:
            await publish(conn, load_journey(JOURNEY), JOURNEY)
        finally:
            await conn.close()
        return cls(settings, prefix, OrchestratorTopics.prefixed(prefix), {})

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "TRAYECTO_DATABASE_URL": self.settings.database_url,
            "TRAYECTO_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "TRAYECTO_LOG_LEVEL": "INFO",
            **extra,
        }

    async def start(self, name: str, log_dir: Path, **env: str) -> ServiceProcess:
        group = f"test-faults-{name}-{uuid.uuid4().hex[:6]}"
        argv = {
            "orchestrator": ["shared.bench.server", "orchestrator", "{port}", self.prefix, group],
            "delivery": ["shared.bench.server", "delivery", "{port}", self.prefix, group],
            "metrics": [
                "tests.integration.metrics.crash_server", "{port}", self.prefix, group, "0",
            ],
        }[name]  # fmt: skip
        service = ServiceProcess(name, argv, self.env(**env), log_dir / f"{name}.log", group=group)
        self.services[name] = service
        service.start()
        await service.ready()
        return service

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.services.values()))

    async def fetchval(self, query: str, *args: object) -> object:
        conn = await asyncpg.connect(self.settings.database_url, timeout=5)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.settings.database_url, timeout=5)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def until(self, what: str, check: object, timeout_s: float) -> None:
        """Poll ``check`` (an async callable returning bool) until true; fail after the timeout."""
        assert callable(check)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                if await check():
                    return
            except (OSError, asyncpg.PostgresError):
                pass  # the database is coming back
            for service in self.services.values():
                assert service.alive, f"{service.name} exited:\n{service.tail()}"
            assert loop.time() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.5)

    async def exited_runs(self) -> int:
        value = await self.fetchval(
            "SELECT count(*) FROM prospect_state WHERE state->'runs'->$1->>'status' = 'exited'",
            JOURNEY_ID,
        )
        assert isinstance(value, int)
        return value

    async def unpublished(self) -> int:
        value = await self.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        assert isinstance(value, int)
        return value


def lead(prospect: str) -> TouchpointEvent:
    return TouchpointEvent(
        prospect_id=prospect,
        type=TouchpointType.LEAD_CAPTURED,
        name="Lead Created",
        channel=Channel.PAID_SEARCH,
        occurred_at=datetime.now(UTC),
        source="test",
    )


def identify(prospect: str) -> IdentifyEvent:
    return IdentifyEvent(
        prospect_id=prospect,
        user_id=prospect,
        traits={"email": f"{prospect}@example.com", "first_name": "Ana"},
        occurred_at=datetime.now(UTC),
        source="test",
    )


async def end_offsets(settings: Settings, topics: Sequence[str]) -> dict[str, int]:
    """Records ever written to each topic (sum of its partitions' end offsets)."""
    counts = await topic_partitions(settings, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","))
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(counts[t])]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return {t: sum(n for tp, n in ends.items() if tp.topic == t) for t in topics}


async def committed_offsets(settings: Settings, group: str, topic: str) -> int:
    """Sum of the group's committed offsets on ``topic`` (0 for a partition never committed)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic)


@dataclass(frozen=True)
class Accounting:
    """What the topics and tables say after a flow; the figures a report quotes."""

    events_on_topic: int
    distinct_events: int
    processed: int
    commands_on_topic: int
    distinct_commands: int
    prospects_with_two_commands: int
    transitions_on_topic: int
    distinct_transitions: int


async def check_exactly_once(
    flow: Flow, prospects: Sequence[str], inputs: int, outcomes: Sequence[WireMessage] = ()
) -> Accounting:
    """Every input processed once, nothing half-applied, one command per prospect.

    ``inputs``: distinct events sent to the touchpoints topic; ``outcomes``: what the
    delivery service published (each also an orchestrator input).
    """
    topics = flow.topics
    touchpoints = await read_topic(flow.settings, topics.touchpoints, inputs, timeout_s=30)
    event_ids = {m.event_id for m in touchpoints}
    assert len(event_ids) == inputs, (len(event_ids), inputs)
    outcome_ids = {m.event_id for m in outcomes}
    processed = {
        r["event_id"]
        for r in await flow.fetch(
            "SELECT event_id FROM processed_events WHERE consumer = 'orchestrator'"
        )
    }
    # Exactly the inputs: none lost, none recorded twice (the primary key would refuse).
    assert processed == event_ids | outcome_ids, (
        len(processed),
        len(event_ids | outcome_ids),
    )
    # No half-applied batch: each processed input left its timeline row, and nothing else.
    timeline = await flow.fetchval("SELECT count(*) FROM prospect_timeline")
    assert timeline == len(processed), (timeline, len(processed))
    states = await flow.fetchval(
        "SELECT count(*) FROM prospect_state WHERE prospect_id = ANY($1::text[])", list(prospects)
    )
    assert states == len(prospects)
    assert await flow.exited_runs() == len(prospects)
    # One run per prospect, each with the journey's transitions exactly once.
    history = await flow.fetch("SELECT prospect_id, run_id, reason, step FROM journey_history")
    runs: dict[object, Counter[tuple[str, str | None]]] = {}
    run_of: dict[str, set[object]] = {}
    for row in history:
        runs.setdefault(row["run_id"], Counter())[(row["reason"], row["step"])] += 1
        run_of.setdefault(row["prospect_id"], set()).add(row["run_id"])
    assert set(run_of) == set(prospects)
    assert all(len(r) == 1 for r in run_of.values())
    wrong = [counts for counts in runs.values() if counts != EXPECTED_HISTORY]
    assert not wrong, wrong[:3]
    transitions = [
        m
        for m in await read_topic(flow.settings, topics.transitions, len(history), timeout_s=20)
        if isinstance(m, StageTransition)
    ]
    assert {m.event_id for m in transitions} == {
        r["event_id"] for r in await flow.fetch("SELECT event_id FROM journey_history")
    }
    # One delivery command per lead, read back from Kafka, counted by command id.
    on_topic = await read_topic(flow.settings, topics.commands, len(prospects), timeout_s=20)
    commands = [m for m in on_topic if isinstance(m, DeliveryCommand)]
    per_prospect: dict[str, set[object]] = {}
    for c in commands:
        per_prospect.setdefault(c.prospect_id, set()).add(c.command_id)
    assert set(per_prospect) == set(prospects)
    twice = sum(1 for ids in per_prospect.values() if len(ids) > 1)
    assert twice == 0
    assert await flow.unpublished() == 0
    return Accounting(
        events_on_topic=len(touchpoints),
        distinct_events=len(event_ids),
        processed=len(processed),
        commands_on_topic=len(commands),
        distinct_commands=len({c.command_id for c in commands}),
        prospects_with_two_commands=twice,
        transitions_on_topic=len(transitions),
        distinct_transitions=len({m.event_id for m in transitions}),
    )
