"""Two metrics instances in one consumer group: the second joins mid-stream, the first leaves.

Transitions of seeded run paths keep arriving over several seconds on three partitions
while the group changes: the second instance joins (the partitions are split between
the two), then the first leaves, cleanly (SIGTERM) in one test and by kill -9 in the
other, while messages still arrive. The series served afterwards must equal those
worked out from the paths that were produced: nothing counted twice, nothing missed.
"""

from __future__ import annotations

import asyncio
import random
import signal
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

from shared.contract import StageTransition, TouchpointEvent
from shared.kafka.producer import Producer
from shared.settings import Settings

from .test_exporter import (
    STAGES,
    Key,
    Path_,
    _counted,
    _expected_runs,
    _Instance,
    _messages,
    _others,
    _paths,
    prepared,
)

RUNS_PER_CHUNK = 4
"""Runs whose transitions go in one send of the stream; one send every ``PAUSE_S``."""
PAUSE_S = 0.2


class _Stream:
    def __init__(self, producer: Producer, topic: str, version: int) -> None:
        self.producer = producer
        self.topic = topic
        paths = _paths(random.Random(11), 500)
        by_run: dict[uuid.UUID, list[StageTransition]] = {p.run: [] for p in paths}
        for message in _messages(paths, version):
            by_run[message.run_id].append(message)
        self._pending = [(p, by_run[p.run]) for p in paths]
        self.sent: list[Path_] = []
        self.messages = 0

    async def chunk(self) -> None:
        assert self._pending, "the stream ran out of runs"
        runs, self._pending = self._pending[:RUNS_PER_CHUNK], self._pending[RUNS_PER_CHUNK:]
        await self.producer.send(self.topic, [m for _, messages in runs for m in messages])
        self.sent.extend(p for p, _ in runs)
        self.messages += sum(len(messages) for _, messages in runs)
        await asyncio.sleep(PAUSE_S)

    async def chunks(self, n: int) -> None:
        for _ in range(n):
            await self.chunk()


def _sum(samples: dict[Key, float], name: str) -> int:
    return sum(int(v) for (n, _), v in samples.items() if n == name)


async def _received(instance: _Instance) -> int:
    """Messages this instance's consumer has been given so far (its own /metrics)."""
    return _sum(await instance.samples(), "faststream_received_messages_total")


async def _counted_all(instance: _Instance, total: int, timeout_s: float) -> dict[Key, float]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        samples = await instance.samples()
        done = _sum(samples, "trayecto_metrics_events_total")
        if done >= total:
            return samples
        assert asyncio.get_running_loop().time() < deadline, f"{done}/{total} counted"
        await asyncio.sleep(0.5)


async def _shut_down(first: _Instance, stream: _Stream) -> None:
    first.process.terminate()
    await stream.chunks(3)  # the stream goes on meanwhile
    # uvicorn shuts the app down (the consumer leaves the group), then re-raises SIGTERM.
    assert await asyncio.to_thread(first.process.wait, 30) == -signal.SIGTERM


async def _kill(first: _Instance, stream: _Stream) -> None:
    first.process.kill()
    await stream.chunks(3)
    assert await asyncio.to_thread(first.process.wait, 30) == -signal.SIGKILL


async def _rebalance(
    settings: Settings, dsn: str, leave: Callable[[_Instance, _Stream], Awaitable[None]]
) -> None:
    version, prefix, topics = await prepared(settings, dsn)
    app_settings = settings.model_copy(update={"database_url": dsn})
    group = f"test-metrics-rebalance-{uuid.uuid4().hex[:6]}"
    others, expected = _others(prefix)

    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    stream = _Stream(producer, topics.transitions, version)
    first = _Instance(app_settings, prefix, group, crash_at=0)
    second: _Instance | None = None
    try:
        assert await _received(first) == 0  # up
        await stream.chunks(10)
        second = _Instance(app_settings, prefix, group, crash_at=0)  # joins: a rebalance
        for _ in range(60):
            await stream.chunk()
            if await _received(second) > 0:
                break
        assert await _received(second) > 0, "the second instance was given no partition"
        # Both hold partitions: the first is given more of the stream too.
        first_at_join = await _received(first)
        for _ in range(40):
            await stream.chunk()
            if await _received(first) > first_at_join:
                break
        assert await _received(first) > first_at_join, "the first instance was left no partition"
        await leave(first, stream)  # leaves: a rebalance, its partitions go to the second
        await stream.chunks(5)
        touchpoints = [m for m in others if isinstance(m, TouchpointEvent)]
        await producer.send(topics.touchpoints, touchpoints)
        await producer.send(topics.outcomes, [m for m in others if m not in touchpoints])

        total = stream.messages + len(others)
        samples = await _counted_all(second, total, timeout_s=40)
    finally:
        await producer.stop()
        try:
            await first.stop()
        finally:
            if second is not None:
                await second.stop()

    expected.update(_expected_runs(stream.sent, version))
    assert _counted(samples, {name for name, _ in expected}) == expected
    events: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        if name == "trayecto_metrics_events_total":
            events[dict(labels)["outcome"]] += int(value)
    assert events == {"counted": total}
    # Time in stage: one observation per stage left.
    left = Counter(
        STAGES[k] for p in stream.sent for k in range(p.depth) if k + 1 < p.depth or p.exited
    )
    run = {"journey": "smb-owner", "version": str(version), "persona": "smb-owner"}
    observed = {
        stage: samples.get(
            ("trayecto_time_in_stage_seconds_count", frozenset({**run, "stage": stage}.items())),
            0,
        )
        for stage in STAGES
    }
    assert observed == {stage: left[stage] for stage in STAGES}


async def test_second_joins_then_first_shuts_down(settings: Settings, fresh_database: str) -> None:
    await _rebalance(settings, fresh_database, _shut_down)


async def test_second_joins_then_first_is_killed(settings: Settings, fresh_database: str) -> None:
    await _rebalance(settings, fresh_database, _kill)
