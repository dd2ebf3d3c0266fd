"""The metrics service counts every message once, across kill -9 and restarts.

Messages are generated from run paths drawn with a seed; the expected series are worked
out from those paths (not from the messages), then compared with what ``/metrics``
serves after a crash between the database commit and the Kafka offset commit, and again
after a clean restart: the values continue, nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.metrics.topics import MetricsTopics
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from shared.contract import (
    Channel,
    ContentType,
    DeliveryOutcome,
    DeliveryStatus,
    Emotion,
    StageTransition,
    TouchpointEvent,
    TouchpointType,
    WireMessage,
)
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.kafka.codec import Record
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port
from ..names import topic_prefix

ROOT = Path(__file__).resolve().parents[3]
JOURNEY = (ROOT / "journeys" / "smb-owner.yaml").read_text()
STAGES = ["stranger", "visitor", "contact", "prospect", "customer", "promoter"]
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class Path_:
    run: uuid.UUID
    depth: int  # stages reached
    exited: bool
    variant: str | None
    durations: list[int]  # seconds spent in each stage left


def _paths(rng: random.Random, runs: int) -> list[Path_]:
    return [
        Path_(
            uuid.uuid4(),
            depth := rng.randint(1, len(STAGES)),
            rng.random() < 0.5,
            rng.choice([None, "discount", "trial"]),
            [rng.randint(30, 20 * 86400) for _ in range(depth)],
        )
        for _ in range(runs)
    ]


def _messages(paths: list[Path_], version: int) -> list[StageTransition]:
    out = []
    for i, p in enumerate(paths):
        base = {
            "prospect_id": f"p{i}",
            "journey": "smb-owner",
            "journey_version": version,
            "persona": "smb-owner",
            "run_id": p.run,
            "run_entered_at": T0,
        }
        out.append(
            StageTransition(
                **base, reason="entered", to_stage=STAGES[0], occurred_at=T0, stage_entered_at=T0
            )
        )
        variants = {}
        if p.variant is not None:
            variants = {"offer-test": p.variant}
            out.append(
                StageTransition(
                    **base,
                    reason="step",
                    step="offer-test",
                    variant=p.variant,
                    from_stage=STAGES[0],
                    to_stage=STAGES[0],
                    occurred_at=T0,
                    variants=variants,
                )
            )
        entered = T0
        for k in range(1, p.depth):
            left = entered + timedelta(seconds=p.durations[k - 1])
            out.append(
                StageTransition(
                    **base,
                    reason="advanced",
                    from_stage=STAGES[k - 1],
                    to_stage=STAGES[k],
                    stage_entered_at=entered,
                    occurred_at=left,
                    variants=variants,
                )
            )
            entered = left
        if p.exited:
            out.append(
                StageTransition(
                    **base,
                    reason="exited",
                    from_stage=STAGES[p.depth - 1],
                    stage_entered_at=entered,
                    variants=variants,
                    occurred_at=entered + timedelta(seconds=p.durations[-1]),
                )
            )
    return out


def _expected_runs(paths: list[Path_], version: int) -> Counter[Key]:
    run = {"journey": "smb-owner", "version": str(version), "persona": "smb-owner"}
    expected: Counter[Key] = Counter()

    def add(name: str, **labels: str) -> None:
        expected[(name, frozenset(labels.items()))] += 1

    for p in paths:
        add("trayecto_journey_entries_total", **run)
        reached = STAGES[: p.depth]
        for k, stage in enumerate(reached):
            add("trayecto_stage_entries_total", **run, stage=stage)
            if k + 1 < p.depth:
                add("trayecto_stage_exits_total", **run, stage=stage, outcome="converted")
                add("trayecto_stage_conversions_total", **run, stage=stage, to_stage=STAGES[k + 1])
            if k >= 1 and p.variant is not None:
                add(
                    "trayecto_variant_stage_entries_total",
                    journey="smb-owner",
                    version=str(version),
                    step="offer-test",
                    variant=p.variant,
                    stage=stage,
                )
        if p.variant is not None:
            add("trayecto_step_entries_total", **run, step="offer-test", variant=p.variant)
        if p.exited:
            add("trayecto_stage_exits_total", **run, stage=reached[-1], outcome="exited")
            add("trayecto_journey_exits_total", **run, stage=reached[-1])
    return expected


def _others(prefix: str) -> tuple[list[WireMessage], Counter[Key]]:
    """Touchpoints and delivery outcomes, with the series each one adds."""
    expected: Counter[Key] = Counter()
    messages: list[WireMessage] = []
    cases = [
        # (type, channel, journey property, step property, emotion) → engagement labels
        (TouchpointType.EMAIL_OPENED, Channel.EMAIL, "smb-owner", "await-visit", None),
        (TouchpointType.EMAIL_CLICKED, Channel.EMAIL, "smb-owner", "no-such-step", None),
        (TouchpointType.PAGE_VIEW, Channel.WEB, "a-journey-nobody-published", "x", None),
        (TouchpointType.PAGE_VIEW, Channel.PAID_SEARCH, None, None, None),
        (TouchpointType.FEEDBACK, Channel.EMAIL, "smb-owner", "await-visit", Emotion.NEGATIVE),
        (TouchpointType.FEEDBACK, Channel.WEB, None, None, Emotion.POSITIVE),
    ]
    for n, (type_, channel, journey, step, emotion) in enumerate(cases * 3):
        properties = {k: v for k, v in (("journey", journey), ("step", step)) if v is not None}
        messages.append(
            TouchpointEvent(
                prospect_id=f"t{n}",
                type=type_,
                name=type_.value,
                channel=channel,
                occurred_at=T0,
                source="test",
                properties=properties,
                emotion=emotion,
            )
        )
        expected[
            (
                "trayecto_touchpoints_total",
                frozenset({"type": type_.value, "channel": channel.value}.items()),
            )
        ] += 1
        j = "" if journey is None else journey if journey == "smb-owner" else "other"
        s = "" if step is None else step if step == "await-visit" else "other"
        if j and s:
            expected[
                (
                    "trayecto_touchpoint_engagements_total",
                    frozenset({"journey": j, "step": s, "type": type_.value}.items()),
                )
            ] += 1
        if emotion is not None:
            expected[
                (
                    "trayecto_feedback_total",
                    frozenset({"journey": j, "step": s, "emotion": emotion.value}.items()),
                )
            ] += 1
    for n, status in enumerate([DeliveryStatus.SENT] * 5 + [DeliveryStatus.BOUNCED] * 2):
        messages.append(
            DeliveryOutcome(
                prospect_id=f"d{n}",
                command_id=uuid.uuid4(),
                status=status,
                channel=Channel.EMAIL,
                content="welcome",
                content_type=ContentType.EMAIL,
                journey="smb-owner",
                variant="a" if n % 2 else None,
            )
        )
        labels = {
            "journey": "smb-owner",
            "channel": "email",
            "content": "welcome",
            "variant": "a" if n % 2 else "",
            "status": status.value,
        }
        expected[("trayecto_deliveries_total", frozenset(labels.items()))] += 1
    return messages, expected


class _Instance:
    def __init__(self, settings: Settings, prefix: str, group: str, crash_at: int) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "TRAYECTO_DATABASE_URL": settings.database_url,
            "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.metrics.crash_server",
                str(self.port),
                prefix,
                group,
                str(crash_at),
            ],
            cwd=ROOT,
            env=env,
        )

    async def samples(self) -> dict[Key, float]:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as client:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                try:
                    text = (await client.get("/metrics")).text
                    break
                except httpx.TransportError:
                    assert asyncio.get_running_loop().time() < deadline, "metrics did not start"
                    await asyncio.sleep(0.2)
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        await asyncio.to_thread(self.process.wait, 30)


def _counted(samples: dict[Key, float], names: set[str]) -> Counter[Key]:
    return Counter({k: int(v) for k, v in samples.items() if k[0] in names and v})


async def _wait_until_counted(instance: _Instance, total: int) -> dict[Key, float]:
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        samples = await instance.samples()
        done = sum(v for (n, _), v in samples.items() if n == "trayecto_metrics_events_total")
        if done >= total or asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(1)


async def prepared(
    settings: Settings, dsn: str, journey: str = JOURNEY
) -> tuple[int, str, MetricsTopics]:
    """``dsn`` migrated with ``journey`` published; the metrics topics under a new prefix."""
    await migrate(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        version, _ = await publish(conn, load_journey(journey), journey)
    finally:
        await conn.close()
    prefix = topic_prefix()
    topics = MetricsTopics.prefixed(prefix)
    await ensure_topics(settings, topics.watched, partitions=3)
    return version, prefix, topics


async def test_counts_once_across_a_kill_after_commit_and_a_restart(
    settings: Settings, fresh_database: str
) -> None:
    version, prefix, topics = await prepared(settings, fresh_database)
    settings = settings.model_copy(update={"database_url": fresh_database})
    group = f"test-metrics-{uuid.uuid4().hex[:8]}"

    paths = _paths(random.Random(7), 80)
    transitions = _messages(paths, version)
    others, expected = _others(prefix)
    expected.update(_expected_runs(paths, version))
    poison = Record(b"p-poison", b"{not json", {"trayecto-type": "touchpoint"})
    total = len(transitions) + len(others) + 1

    producer = Producer(settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        first = _Instance(settings, prefix, group, crash_at=1)
        await producer.send(topics.transitions, transitions[:50])
        # The first batch is counted and committed in PostgreSQL, then the process dies
        # before Kafka hears of it: the batch comes again to the next instance.
        assert await asyncio.to_thread(first.process.wait, 60) == -9
        await producer.send(topics.transitions, transitions[50:])
        await producer.send_records([(topics.touchpoints, poison)])
        touchpoints = [m for m in others if isinstance(m, TouchpointEvent)]
        await producer.send(topics.touchpoints, touchpoints)
        await producer.send(topics.outcomes, [m for m in others if m not in touchpoints])
    finally:
        await producer.stop()

    second = _Instance(settings, prefix, group, crash_at=0)
    try:
        samples = await _wait_until_counted(second, total)
    finally:
        await second.stop()
    names = {name for name, _ in expected}
    assert _counted(samples, names) == expected
    events: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        if name == "trayecto_metrics_events_total":
            events[dict(labels)["outcome"]] += int(value)
    assert events == {"counted": total - 1, "undecodable": 1}

    # Time in stage: one observation per stage left, in the bucket of its duration.
    left = [
        (STAGES[k], p.durations[k])
        for p in paths
        for k in range(p.depth)
        if k + 1 < p.depth or p.exited
    ]
    for stage in STAGES:
        durations = [d for s, d in left if s == stage]
        labels = frozenset(
            {
                "journey": "smb-owner",
                "version": str(version),
                "persona": "smb-owner",
                "stage": stage,
            }.items()
        )
        assert samples.get(("trayecto_time_in_stage_seconds_count", labels), 0) == len(durations)
        assert samples.get(("trayecto_time_in_stage_seconds_sum", labels), 0) == sum(durations)
        le = frozenset({*labels, ("le", "86400.0")})
        assert samples.get(("trayecto_time_in_stage_seconds_bucket", le), 0) == sum(
            d <= 86400 for d in durations
        )

    # A clean restart serves the same values at once: no reset, nothing counted again.
    third = _Instance(settings, prefix, group, crash_at=0)
    try:
        again = await third.samples()
    finally:
        await third.stop()
    assert _counted(again, names) == expected
    lag = {
        dict(labels)["partition"]: v
        for (n, labels), v in again.items()
        if n == "trayecto_consumer_lag" and dict(labels)["topic"] == topics.transitions
    }
    assert lag == {"0": 0, "1": 0, "2": 0}
