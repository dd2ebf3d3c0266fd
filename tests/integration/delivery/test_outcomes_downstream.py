"""Delivery outcomes reach the orchestrator and the metrics service.

The real orchestrator runs a journey that sends an email; its commands go to the real
delivery service, which sends to a real SMTP server that answers each recipient its
own way (accepted, refused at RCPT, busy once); the prospect suppressed on email is
skipped. Every outcome (sent, skipped, bounced, retried) comes back on
``delivery.outcomes``: the orchestrator counts it in the prospect's facts and timeline,
and the metrics service in ``trayecto_deliveries_total``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.metrics import create_app as create_metrics
from services.metrics.topics import MetricsTopics
from shared.contract import Channel, IdentifyEvent, TouchpointEvent, TouchpointType
from shared.settings import Settings

from ..ingest.conftest import free_port, serve
from ..orchestrator.conftest import Start, start_orchestrator  # noqa: F401 (a fixture)
from .conftest import running_delivery
from .smtp_server import Inbox, SmtpServer

pytestmark = pytest.mark.integration

JOURNEY = """
journey: outcomes-flow
title: A welcome email and its outcome
persona: {id: outcome-tester}
entry: {event: lead_captured}
steps:
  - id: welcome
    send: {content: it-welcome, type: email}
  - id: done
    exit: completed
"""
SERIES = "trayecto_deliveries_total"


@dataclass
class _BusyOnceInbox(Inbox):
    """Answers the first DATA for each address in ``busy_once`` with a 451."""

    busy_once: set[str] = field(default_factory=set)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            address = envelope.rcpt_tos[0]
            if address in self.busy_once:
                self.busy_once.discard(address)
                self.data_attempts += 1
                return "451 4.3.0 busy, try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(inbox=_BusyOnceInbox()) as server:
        yield server


def _lead(prospect: str) -> list[IdentifyEvent | TouchpointEvent]:
    now = datetime.now(UTC)
    return [
        IdentifyEvent(
            prospect_id=prospect,
            traits={"email": f"{prospect}@example.com", "first_name": "Ana"},
            occurred_at=now,
            source="test",
        ),
        TouchpointEvent(
            prospect_id=prospect,
            type=TouchpointType.LEAD_CAPTURED,
            name="lead_captured",
            channel=Channel.WEB,
            occurred_at=now,
            source="test",
        ),
    ]


async def _deliveries(client: httpx.AsyncClient) -> dict[str, float]:
    """``trayecto_deliveries_total`` of the journey, by status."""
    text = (await client.get("/metrics")).text
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == SERIES and sample.labels.get("journey") == "outcomes-flow"
    }


async def test_every_outcome_changes_the_prospect_and_the_delivery_series(
    settings: Settings,
    fresh_database: str,
    smtp: SmtpServer,
    start_orchestrator: Start,  # noqa: F811
) -> None:
    o = await start_orchestrator(JOURNEY)
    prefix = o.topics.commands.removesuffix("delivery.commands")
    assert o.topics.outcomes == f"{prefix}delivery.outcomes"
    run = uuid.uuid4().hex[:8]
    sent, skipped, bounced, retried = (f"{kind}-{run}" for kind in ("sent", "skip", "bnc", "rty"))
    inbox = smtp.inbox
    assert isinstance(inbox, _BusyOnceInbox)
    inbox.refuse.add(f"{bounced}@example.com")
    inbox.busy_once.add(f"{retried}@example.com")
    await o.rows(
        "INSERT INTO suppressions (prospect_id, channel, reason) VALUES ($1, 'email', 'complaint')",
        skipped,
    )
    metrics_topics = MetricsTopics(
        transitions=o.topics.transitions,
        touchpoints=o.topics.touchpoints,
        outcomes=o.topics.outcomes,
        watched=(o.topics.transitions, o.topics.touchpoints, o.topics.outcomes),
    )
    port = free_port()
    metrics_settings = settings.model_copy(update={"database_url": fresh_database})
    server, task = await serve(
        create_metrics(metrics_settings, topics=metrics_topics, group=f"test-metrics-{run}"), port
    )
    try:
        async with (
            running_delivery(settings, fresh_database, smtp, prefix=prefix),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as scrape,
        ):
            assert await _deliveries(scrape) == {}
            await o.send(*(m for p in (sent, skipped, bounced, retried) for m in _lead(p)))
            expected = {"sent": 2.0, "skipped": 1.0, "bounced": 1.0, "retried": 1.0}

            async def counted() -> bool:
                return await _deliveries(scrape) == expected

            await o.wait_for(counted, timeout_s=40, what=f"{SERIES} to count every outcome")
            states: dict[str, dict[str, Any]] = {}

            async def absorbed() -> bool:
                for prospect, status in (
                    (sent, "sent"),
                    (skipped, "skipped"),
                    (bounced, "bounced"),
                    (retried, "sent"),
                ):
                    answer = await o.client.get(f"/v1/prospects/{prospect}")
                    assert answer.status_code == 200, answer.text
                    states[prospect] = answer.json()
                    if f"count.delivery_{status}" not in states[prospect]["facts"]:
                        return False
                return True

            await o.wait_for(absorbed, what="the orchestrator to absorb every outcome")
            await asyncio.sleep(1.0)  # anything counted twice would show by now
            assert await _deliveries(scrape) == expected
    finally:
        server.should_exit = True
        await task

    def delivery_facts(prospect: str) -> dict[str, int]:
        facts: dict[str, int] = states[prospect]["facts"]
        return {k: v for k, v in facts.items() if k.startswith("count.delivery_")}

    def timeline(prospect: str) -> list[tuple[str, str | None]]:
        return [
            (t["type"], t["detail"]["reason"])
            for t in states[prospect]["timeline"]
            if t["kind"] == "delivery"
        ]

    assert delivery_facts(sent) == {"count.delivery_sent": 1}
    assert delivery_facts(skipped) == {"count.delivery_skipped": 1}
    assert delivery_facts(bounced) == {"count.delivery_bounced": 1}
    assert delivery_facts(retried) == {"count.delivery_retried": 1, "count.delivery_sent": 1}
    assert timeline(sent) == [("sent", "250 2.0.0 queued")]
    assert timeline(skipped) == [("skipped", "complaint")]
    [(status, reason)] = timeline(bounced)
    assert status == "bounced"
    assert (reason or "").startswith("550 ")
    assert timeline(retried) == [
        ("retried", "451 4.3.0 busy, try again later"),
        ("sent", "250 2.0.0 queued"),
    ]
    for prospect in (sent, skipped, bounced, retried):
        [journey] = states[prospect]["journeys"]
        assert (journey["journey"], journey["status"]) == ("outcomes-flow", "exited")
        for entry in states[prospect]["timeline"]:
            if entry["kind"] == "delivery":
                assert (entry["name"], entry["channel"]) == ("it-welcome", "email")
    # Sent once each: the first and the retried prospect's messages.
    assert sorted(inbox.by_message_id().values()) == [1, 1]
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in inbox.messages) == sorted(
        [f"{retried}@example.com", f"{sent}@example.com"]
    )
