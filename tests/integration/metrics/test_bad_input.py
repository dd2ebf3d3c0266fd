"""Hostile records on the topics the metrics service counts: counted as undecodable (the
topic's owner dead-letters them), every valid one around them counted exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.metrics import create_app
from services.metrics.topics import MetricsTopics
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.settings import Settings

from ..bad_records import plan, publish
from ..ingest.conftest import free_port, serve
from ..names import topic_prefix

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _samples(client: httpx.AsyncClient) -> Samples:
    text = (await client.get("/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_hostile_records_are_counted_as_undecodable_and_the_rest_once(
    settings: Settings, fresh_database: str
) -> None:
    await migrate(fresh_database)
    topics = MetricsTopics.prefixed(topic_prefix())
    await ensure_topics(settings, topics.watched, partitions=3)
    app_settings = settings.model_copy(update={"database_url": fresh_database})
    plans = [
        plan(topics.transitions, ["stage_transition"], start=0),
        plan(topics.touchpoints, ["touchpoint", "identify"], start=1000),
        plan(topics.outcomes, ["delivery_outcome"], start=2000),
    ]
    port = free_port()
    group = f"test-metrics-{uuid.uuid4().hex[:8]}"
    server, task = await serve(create_app(app_settings, topics=topics, group=group), port)
    try:
        await publish(app_settings, plans)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            total = sum(len(p.cases) for p in plans)
            deadline = asyncio.get_running_loop().time() + 40
            while True:
                samples = await _samples(client)
                done = sum(
                    v for (n, _), v in samples.items() if n == "trayecto_metrics_events_total"
                )
                if done >= total or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
            healthy = (await client.get("/healthz")).status_code
    finally:
        server.should_exit = True
        await task

    events: Counter[tuple[str, str]] = Counter()
    for (name, labels), value in samples.items():
        if name == "trayecto_metrics_events_total":
            found = dict(labels)
            events[(found["topic"], found["outcome"])] += int(value)
    expected: Counter[tuple[str, str]] = Counter()
    for p in plans:
        expected[(p.topic, "counted")] += len(p.valid)
        expected[(p.topic, "undecodable")] += len(p.invalid)
    assert events == expected

    # What each valid record adds, once: entries, touchpoints and deliveries.
    def total_of(name: str) -> int:
        return sum(int(v) for (n, _), v in samples.items() if n == name)

    kinds = Counter(case.kind for p in plans for case in p.valid)
    assert total_of("trayecto_journey_entries_total") == kinds["stage_transition"]
    assert total_of("trayecto_touchpoints_total") == kinds["touchpoint"]
    assert total_of("trayecto_deliveries_total") == kinds["delivery_outcome"]
    assert healthy == 200
