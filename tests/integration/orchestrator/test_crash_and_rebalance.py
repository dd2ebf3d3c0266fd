"""kill -9 between the database commit and the offset commit; two instances rebalancing.

Either way every prospect ends where it should: its state, its history and the
transitions on Kafka are those of one clean pass through the journey, and each delivery
command exists once.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.orchestrator.engine import ProspectState
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from shared.contract import (
    Channel,
    DeliveryCommand,
    StageTransition,
    TouchpointEvent,
    TouchpointType,
)
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, read_topic
from .conftest import ADMIN, ADMIN_TOKEN, prepare

ROOT = Path(__file__).resolve().parents[3]
TWO_SENDS = """
journey: two-sends
title: Welcome and follow-up
persona: {id: tester}
entry: {event: lead_captured}
steps:
  - id: welcome
    send: {content: welcome}
  - id: pause
    wait: 1s
  - id: follow-up
    send: {content: follow-up}
  - id: done
    exit: completed
"""


def _lead(prospect: str) -> TouchpointEvent:
    return TouchpointEvent(
        prospect_id=prospect,
        type=TouchpointType.LEAD_CAPTURED,
        name="lead_captured",
        channel=Channel.PAID_SEARCH,
        occurred_at=datetime.now(UTC),
        source="test",
    )


class _Instance:
    def __init__(self, settings: Settings, prefix: str, group: str, crash_at: int) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "TRAYECTO_DATABASE_URL": settings.database_url,
            "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "TRAYECTO_ADMIN_TOKEN": ADMIN_TOKEN,
        }
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tests.integration.orchestrator.crash_server",
                str(self.port), prefix, group, str(crash_at),
            ],
            cwd=ROOT,
            env=env,
        )  # fmt: skip

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        await asyncio.to_thread(self.process.wait, 30)


async def _setup(settings: Settings, dsn: str, prospects: int) -> tuple[Settings, str, list[str]]:
    topics = await prepare(settings, dsn)
    prefix = topics.touchpoints.removesuffix("touchpoints")
    conn = await asyncpg.connect(dsn)
    try:
        await publish(conn, load_journey(TWO_SENDS), TWO_SENDS)
    finally:
        await conn.close()
    run = uuid.uuid4().hex[:6]
    return (
        settings.model_copy(update={"database_url": dsn}),
        prefix,
        [f"p{i}-{run}" for i in range(prospects)],
    )


async def _send(settings: Settings, topic: str, prospects: list[str]) -> None:
    producer = Producer(settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        await producer.send(topic, [_lead(p) for p in prospects])
    finally:
        await producer.stop()


async def _all_exited(dsn: str, prospects: list[str], timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        conn = await asyncpg.connect(dsn)
        try:
            done = await conn.fetchval(
                "SELECT count(*) FROM prospect_state WHERE prospect_id = ANY($1::text[])"
                " AND state->'runs'->'two-sends'->>'status' = 'exited'",
                prospects,
            )
        finally:
            await conn.close()
        if done == len(prospects):
            return
        assert asyncio.get_running_loop().time() < deadline, f"{done}/{len(prospects)} finished"
        await asyncio.sleep(0.5)


PATH = [
    ("entered", None), ("step", "welcome"), ("step", "pause"), ("step", "follow-up"),
    ("step", "done"), ("exited", "done"),
]  # fmt: skip
"""Each prospect's transitions through TWO_SENDS, once each."""


async def _every_prospect_once(
    settings: Settings, dsn: str, prefix: str, prospects: list[str]
) -> None:
    """Every prospect's state, history and transitions are those of one clean pass."""
    conn = await asyncpg.connect(dsn)
    try:
        states = await conn.fetch(
            "SELECT prospect_id, state FROM prospect_state WHERE prospect_id = ANY($1::text[])",
            prospects,
        )
        history = await conn.fetch(
            "SELECT prospect_id, reason, step FROM journey_history"
            " WHERE prospect_id = ANY($1::text[]) ORDER BY id",
            prospects,
        )
        # Each lead and each timer firing processed once: nothing twice, nothing lost.
        processed = await conn.fetchval(
            "SELECT count(*) FROM processed_events WHERE consumer = 'orchestrator'"
        )
        timers = await conn.fetchval(
            "SELECT count(*) FROM timers WHERE prospect_id = ANY($1::text[])", prospects
        )
    finally:
        await conn.close()
    assert processed == 2 * len(prospects)
    assert timers == 0
    assert sorted(row["prospect_id"] for row in states) == sorted(prospects)
    for row in states:
        state = ProspectState.model_validate_json(row["state"])
        run = state.runs["two-sends"]
        assert (run.status, run.exit_reason, run.step, run.number) == (
            "exited", "completed", "done", 1,
        ), row["prospect_id"]  # fmt: skip
        assert run.visits == {"welcome": 1, "pause": 1, "follow-up": 1, "done": 1}
        assert len(state.sends) == 2
    paths: dict[str, list[tuple[str, str | None]]] = {p: [] for p in prospects}
    for h in history:
        paths[h["prospect_id"]].append((h["reason"], h["step"]))
    wrong = {p: path for p, path in paths.items() if path != PATH}
    assert not wrong, list(wrong.items())[:3]

    expected = len(PATH) * len(prospects)
    messages = await read_topic(settings, f"{prefix}journey.transitions", expected, timeout_s=20)
    transitions = [m for m in messages if isinstance(m, StageTransition)]
    assert len({t.event_id for t in transitions}) == len(transitions) == expected
    on_wire: dict[str, Counter[tuple[str, str | None]]] = {p: Counter() for p in prospects}
    for t in transitions:
        on_wire[t.prospect_id][t.reason, t.step] += 1
    assert all(counts == Counter(PATH) for counts in on_wire.values())


async def _processed(instance: _Instance) -> float:
    """Inputs the instance processed so far (its own metrics)."""
    url = f"http://127.0.0.1:{instance.port}/metrics"
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(url)).text
    except httpx.HTTPError:
        return 0.0  # not serving yet
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "trayecto_orchestrator_events_total"
                and sample.labels.get("outcome") == "processed"
            ):
                return sample.value
    return 0.0


async def _commands_exactly_once(settings: Settings, topic: str, prospects: list[str]) -> None:
    expected = 2 * len(prospects)
    messages = await read_topic(settings, topic, expected, timeout_s=20)
    commands = [m for m in messages if isinstance(m, DeliveryCommand)]
    per_send = Counter((c.prospect_id, c.content) for c in commands)
    assert set(per_send) == {(p, c) for p in prospects for c in ("welcome", "follow-up")}
    assert max(per_send.values()) == 1, [k for k, n in per_send.items() if n > 1][:5]
    assert len({c.command_id for c in commands}) == expected


async def test_kill_9_between_db_commit_and_offset_commit(
    settings: Settings, fresh_database: str
) -> None:
    app_settings, prefix, prospects = await _setup(settings, fresh_database, 40)
    await _send(app_settings, f"{prefix}touchpoints", prospects)
    group = f"test-crash-{uuid.uuid4().hex[:6]}"

    crashing = _Instance(app_settings, prefix, group, crash_at=1)
    code = await asyncio.to_thread(crashing.process.wait, 60)
    assert code == -9, "the instance should have killed itself after its first commit"
    conn = await asyncpg.connect(fresh_database)
    try:
        # The crash point: the batch is committed in PostgreSQL, nothing was published.
        committed = await conn.fetchval("SELECT count(*) FROM processed_events")
        unpublished = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        published = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
        )
    finally:
        await conn.close()
    assert committed > 0
    assert unpublished > 0
    assert published == 0

    survivor = _Instance(app_settings, prefix, group, crash_at=0)
    try:
        await _all_exited(fresh_database, prospects, timeout_s=60)
        await _commands_exactly_once(app_settings, f"{prefix}delivery.commands", prospects)
        await _every_prospect_once(app_settings, fresh_database, prefix, prospects)
        url = f"http://127.0.0.1:{survivor.port}"
        async with httpx.AsyncClient(base_url=url, headers=ADMIN) as client:
            state = (await client.get(f"/v1/prospects/{prospects[0]}")).json()
        assert state["journeys"][0]["exit_reason"] == "completed"
        assert [(h["reason"], h["step"]) for h in state["history"]] == PATH
    finally:
        await survivor.stop()


async def test_two_instances_and_a_rebalance_mid_stream(
    settings: Settings, fresh_database: str
) -> None:
    app_settings, prefix, prospects = await _setup(settings, fresh_database, 60)
    touchpoints = f"{prefix}touchpoints"
    group = f"test-rebalance-{uuid.uuid4().hex[:6]}"
    first = _Instance(app_settings, prefix, group, crash_at=0)
    second: _Instance | None = None
    try:
        await _send(app_settings, touchpoints, prospects[:30])
        await _until(lambda: _processed(first), 30, 30, "the first instance to take the leads")
        second = _Instance(app_settings, prefix, group, crash_at=0)  # joins: rebalance
        # More leads while both run, until the second has partitions and takes some.
        deadline = asyncio.get_running_loop().time() + 60
        wave = 0
        while await _processed(second) == 0:
            assert asyncio.get_running_loop().time() < deadline, "the second took no partition"
            more = [f"{prospects[0]}-w{wave}-{i}" for i in range(3)]
            wave += 1
            prospects += more
            await _send(app_settings, touchpoints, more)
            await asyncio.sleep(0.5)
        before_leaving = await _processed(first)
        await first.stop()  # leaves: rebalance again, its partitions move to the second
        await _send(app_settings, touchpoints, prospects[30:60])
        await _all_exited(fresh_database, prospects, timeout_s=90)
        # Both instances did part of the work, and all of it was done exactly once.
        assert before_leaving >= 30
        assert 0 < await _processed(second) < 2 * len(prospects)
        await _commands_exactly_once(app_settings, f"{prefix}delivery.commands", prospects)
        await _every_prospect_once(app_settings, fresh_database, prefix, prospects)
    finally:
        await first.stop()
        if second is not None:
            await second.stop()


async def _until(
    read: Callable[[], Awaitable[float]], at_least: float, timeout_s: float, what: str
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await read() < at_least:
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)
