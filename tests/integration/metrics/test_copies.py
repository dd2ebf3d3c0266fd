"""A second record of the same event id is counted once.

Producers publish at least once: ingest killed between Kafka's ack and its commit
publishes the event again when the client retries (same event id, re-normalised), and
an outbox relay killed between the ack and marking its rows publishes them again
(the same bytes). The orchestrator drops such copies by event id; the metrics service
must too, or a kill -9 at the wrong moment counts a touchpoint, a stage entry or a send
twice for good.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.metrics import create_app
from shared.contract import (
    Channel,
    ContentType,
    DeliveryOutcome,
    DeliveryStatus,
    StageTransition,
    TouchpointEvent,
    TouchpointType,
)
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, serve
from .test_exporter import prepared

JOURNEY = """
journey: copies
title: Copies
persona: {id: copy-tester}
entry: {event: lead_captured}
steps:
  - id: done
    exit: completed
"""
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
Key = tuple[str, frozenset[tuple[str, str]]]


def _transitions(prospects: int) -> list[StageTransition]:
    out = []
    for n in range(prospects):
        base = {
            "prospect_id": f"c{n}",
            "journey": "copies",
            "journey_version": 1,
            "persona": "copy-tester",
            "run_id": uuid.uuid4(),
            "run_entered_at": T0,
        }
        out.append(StageTransition(**base, reason="entered", to_stage="stranger", occurred_at=T0))
        out.append(
            StageTransition(
                **base,
                reason="advanced",
                from_stage="stranger",
                to_stage="contact",
                stage_entered_at=T0,
                occurred_at=T0 + timedelta(minutes=n + 1),
            )
        )
    return out


def _touchpoint(n: int, occurred_at: datetime, event_id: uuid.UUID) -> TouchpointEvent:
    return TouchpointEvent(
        event_id=event_id,
        prospect_id=f"c{n}",
        type=TouchpointType.PAGE_VIEW,
        name="page_view",
        channel=Channel.WEB,
        occurred_at=occurred_at,
        source="test",
    )


async def _served(port: int, records: int) -> dict[Key, float]:
    """``/metrics`` once every record has been read (counted or dropped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        while True:
            text = (await client.get("/metrics")).text
            samples = {
                (s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            read = sum(v for (n, _), v in samples.items() if n == "trayecto_metrics_events_total")
            if read >= records:
                return samples
            assert loop.time() < deadline, f"{read} of {records} records read"
            await asyncio.sleep(1)


async def test_a_copy_of_an_event_id_is_counted_once(
    settings: Settings, fresh_database: str
) -> None:
    _, _, topics = await prepared(settings, fresh_database, JOURNEY)
    app_settings = settings.model_copy(update={"database_url": fresh_database})

    transitions = _transitions(10)
    ids = [uuid.uuid4() for _ in range(6)]
    touchpoints = [_touchpoint(n, T0, ids[n]) for n in range(6)]
    # Ingest's copy: the same event id, normalised again at the retry (another receive time).
    retried = [_touchpoint(n, T0 + timedelta(seconds=3), ids[n]) for n in range(3)]
    outcome = DeliveryOutcome(
        prospect_id="c0",
        command_id=uuid.uuid4(),
        status=DeliveryStatus.SENT,
        channel=Channel.EMAIL,
        content="welcome",
        content_type=ContentType.EMAIL,
        journey="copies",
    )

    port = free_port()
    server, task = await serve(
        create_app(app_settings, topics=topics, group=f"test-copies-{uuid.uuid4().hex[:8]}"),
        port,
    )
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        await producer.send(topics.transitions, transitions)
        await producer.send(topics.touchpoints, touchpoints)
        await producer.send(topics.outcomes, [outcome])
        # The relay's copies (the same records again) and ingest's, in later batches.
        await producer.send(topics.transitions, transitions[:7])
        await producer.send(topics.touchpoints, retried)
        await producer.send(topics.outcomes, [outcome])
        records = len(transitions) + 7 + len(touchpoints) + len(retried) + 2
        samples = await _served(port, records)
    finally:
        await producer.stop()
        server.should_exit = True
        await task

    run = {"journey": "copies", "version": "1", "persona": "copy-tester"}
    counted: Counter[str] = Counter()
    for (name, found), n in samples.items():
        if name == "trayecto_metrics_events_total":
            counted[dict(found)["outcome"]] += int(n)
    assert counted == {"counted": records - 11, "duplicate": 11}

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0)

    assert value("trayecto_journey_entries_total", **run) == 10
    assert value("trayecto_stage_entries_total", **run, stage="stranger") == 10
    assert value("trayecto_stage_entries_total", **run, stage="contact") == 10
    assert value("trayecto_touchpoints_total", type="page_view", channel="web") == 6
    labels = {"journey": "copies", "channel": "email", "content": "welcome", "variant": ""}
    assert value("trayecto_deliveries_total", **labels, status="sent") == 1
    left = {"journey": "copies", "version": "1", "persona": "copy-tester", "stage": "stranger"}
    assert value("trayecto_time_in_stage_seconds_count", **left) == 10
