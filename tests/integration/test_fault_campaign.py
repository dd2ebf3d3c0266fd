"""kill -9 of ingest, the orchestrator, delivery and metrics at random moments of a flow.

The four services run as their own processes on a throwaway database and topics, with a
real SMTP server that counts every message by its Message-ID (derived from the command
id). The campaign simulator drives a seeded lead flow through ingest's public API and
reacts to the emails it receives (opens, clicks, downloads, videos), so the journey's
decision tree branches and its timers fire. Meanwhile a schedule drawn from the same
seed SIGKILLs one service at a time and starts it again; every service is killed in
every run. The flow's client retries refused and cut-off requests with the same
messageId, as real senders do.

Once the platform is idle: every event ingest accepted was processed; each transition
and each delivery command exists once (copies of one id on a topic are counted apart:
consumers drop them by id); every send recorded as sent reached the SMTP server
exactly once and nothing arrived twice; the metrics service serves exactly the counts
the topics hold. ``TRAYECTO_FAULT_SEEDS`` (comma-separated) runs other seeds;
``TRAYECTO_FAULT_REPORT`` appends each run's figures to that file as a JSON line
(``python -m tests.integration.fault_campaign.report FILE`` makes the table of
``docs/reliability.md``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path

import asyncpg
import pytest
import yaml

from services.ingest.sources import add_source
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from services.orchestrator.topics import OrchestratorTopics
from shared.db import migrate
from shared.kafka import delete_topics, ensure_topics
from shared.settings import Settings
from shared.simulate import parse_profile, simulate

from .fault_campaign.audit import Figures, account, wait_until_idle
from .fault_campaign.client import Ledger, RetryingTransport
from .fault_campaign.fleet import Fleet
from .fault_campaign.mail import CountingSmtp
from .fault_campaign.server import SERVICES
from .ingest.conftest import free_port
from .names import topic_prefix

SEEDS = [int(s) for s in os.environ.get("TRAYECTO_FAULT_SEEDS", "1,2,3").split(",") if s]
PROSPECTS = 60
RATE = 2.5
FLOW_S = 40.0
IDLE_TIMEOUT_S = 60.0
JOURNEY = """
journey: fault-campaign
title: Fault campaign - opens and clicks choose the path, timers of seconds
persona: {id: fault-tester, title: Fault campaign prospect}
entry:
  event: ad_click
  when: {field: campaign.name, startswith: fault-}
goals:
  - {event: page_view, stage: visitor}
  - {event: form_submitted, stage: contact}
  - {event: email_clicked, stage: prospect}
  - {event: purchase, stage: customer}
steps:
  - id: await-lead
    wait_for: {event: form_submitted, timeout: 8s}
    next: welcome
    on_timeout: no-lead
  - id: welcome
    send: {content: it-welcome}
  - id: await-open
    wait_for: {event: email_opened, timeout: 3s}
    next: offer-test
    on_timeout: nudge
  - id: nudge
    send: {content: it-welcome-guide}
  - id: await-nudge-open
    wait_for: {event: email_opened, timeout: 3s}
    next: offer-test
    on_timeout: cold
  - id: offer-test
    split:
      - {variant: pdf, weight: 1, next: pdf}
      - {variant: video, weight: 1, next: video}
  - id: pdf
    send: {content: it-pdf-summary, type: pdf}
    next: settle
  - id: video
    send: {content: it-video-intro, type: video}
  - id: settle
    wait: 3s
  - id: engaged
    branch:
      - when:
          any:
            - {fact: count.pdf_downloaded, gte: 1}
            - {fact: video_max_percent, gte: 25}
            - {fact: count.email_clicked, gte: 1}
        next: demo-offer
    else: cold
  - id: demo-offer
    send: {content: it-demo-offer}
  - id: done
    exit: engaged
  - id: cold
    exit: not-engaged
  - id: no-lead
    exit: no-lead
"""


PROFILE = """
patience_s: 5
think_s: [0.05, 0.3]
video_beacon_s: 0.05
personas:
  fault-tester:
    weight: 1
    journey_prefix: fault-
    campaigns: [fault-spring, fault-search]
    utm:
      - {source: google, medium: cpc, weight: 1}
      - {source: facebook, medium: paid_social, weight: 1}
    landing_url: https://trayecto.example/fault
    traits:
      first_name: {choices: {Ana: 1, Luis: 1}}
      locale: {choices: {es: 1, en: 1}}
    visit: {probability: 0.9, pages: [1, 2], paths: [/fault, /precios]}
    lead: {probability: 0.8, event: form_submitted}
    conversions:
      - {stage: contact, event: purchase, probability: 0.4, to: customer}
    email:
      contact:
        open: 0.6
        click: 0.5
        pdf: 0.6
        video: [[0, 0.4], [50, 0.3], [100, 0.3]]
        feedback: 0.3
        feedback_negative: 0.3
        unsubscribe: 0.05
"""


KILLS_WITHIN_S = (1.0, 19.0)
"""The kills land in this window of the flow (which lasts longer: arrivals alone take
about PROSPECTS / RATE seconds), one in each of equal slots."""


def kill_schedule(seed: int) -> list[tuple[float, str]]:
    """(seconds into the flow, service): every service once in a drawn order, one more."""
    rng = random.Random(f"faults:{seed}")
    order = [*rng.sample(SERVICES, len(SERVICES)), rng.choice(SERVICES)]
    start, end = KILLS_WITHIN_S
    slot = (end - start) / len(order)
    return [(start + slot * (k + rng.random()), name) for k, name in enumerate(order)]


async def _inject(fleet: Fleet, schedule: list[tuple[float, str]], started: float) -> None:
    for at, name in schedule:
        # A restart that took longer than the slot delays the next kill, never skips it.
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        await fleet.kill_and_restart(name)


def _record(figures: Figures) -> None:
    line = json.dumps(figures.as_json(), sort_keys=True)
    print(f"\nfault campaign: {line}")
    path = os.environ.get("TRAYECTO_FAULT_REPORT")
    if path:
        with Path(path).open("a") as out:
            out.write(line + "\n")


async def _prepare(dsn: str, settings: Settings, prefix: str) -> tuple[list[str], str]:
    await migrate(dsn)
    topics = [*OrchestratorTopics.prefixed(prefix).all, f"{prefix}delivery.dlq"]
    await ensure_topics(settings, topics, partitions=3)
    conn = await asyncpg.connect(dsn)
    try:
        await publish(conn, load_journey(JOURNEY), JOURNEY)
        key = (await add_source(conn, "fault-campaign", rate_limit=100_000)).write_key
    finally:
        await conn.close()
    return topics, key


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", SEEDS)
async def test_kill_9_at_random_moments_of_a_flow_loses_and_doubles_nothing(
    seed: int, settings: Settings, fresh_database: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    prefix = topic_prefix("fault")
    topics, key = await _prepare(fresh_database, settings, prefix)
    ingest_url = f"http://127.0.0.1:{free_port()}"
    ledger = Ledger()
    with CountingSmtp(tmp_path / "mail") as smtp:
        env = {
            "TRAYECTO_DATABASE_URL": fresh_database,
            "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "TRAYECTO_SMTP_URL": smtp.url,
            "TRAYECTO_INGEST_PORT": ingest_url.rpartition(":")[2],
            "TRAYECTO_PUBLIC_URL": ingest_url,
            "TRAYECTO_LOG_LEVEL": "WARNING",
            "TRAYECTO_DB_POOL_MAX": "4",
            "TRAYECTO_DELIVERY_LEASE_S": "5",
            "TRAYECTO_DELIVERY_RETRY_BASE_S": "0.3",
            "TRAYECTO_DELIVERY_RATE_LIMITS": "email=1000,webhook=1000",
        }
        fleet = Fleet.of(SERVICES, prefix, env, tmp_path)
        faults: asyncio.Task[None] | None = None
        try:
            await fleet.start()
            flow_started = time.monotonic()
            faults = asyncio.create_task(_inject(fleet, kill_schedule(seed), flow_started))
            stats = await simulate(
                settings.model_copy(update={"public_url": ingest_url}),
                prospects=PROSPECTS,
                rate=RATE,
                seed=seed,
                personas=None,
                duration=FLOW_S,
                ingest_url=ingest_url,
                write_key=key,
                maildir=smtp.maildir,
                profile=parse_profile(yaml.safe_load(PROFILE)),
                run_id=f"f{seed}",
                transport=RetryingTransport(ledger),
            )
            flow_s = time.monotonic() - flow_started
            await faults
            idle_from = time.monotonic()
            left = await wait_until_idle(settings, fresh_database, prefix, IDLE_TIMEOUT_S)
            idle_s = time.monotonic() - idle_from
            assert not left, f"not idle after {IDLE_TIMEOUT_S:g}s: {left}\n{fleet.tails()}"
            figures, problems = await account(
                settings, fresh_database, prefix, ledger, smtp.counts(), fleet["metrics"].url
            )
        finally:
            if faults is not None and not faults.done():
                faults.cancel()
                await asyncio.gather(faults, return_exceptions=True)
            await fleet.stop()
            await delete_topics(settings, topics)
    figures.seed = seed
    figures.faults = dict(fleet.kills)
    figures.kills = [f"{name}@{at - flow_started:.1f}" for name, at in fleet.killed_at]
    figures.flow_s = round(flow_s, 1)
    figures.idle_s = round(idle_s, 1)
    figures.seconds = round(time.monotonic() - started, 1)
    _record(figures)

    assert not problems, "\n".join(problems)
    assert set(fleet.kills) == set(SERVICES), fleet.kills
    assert fleet.killed_at[-1][1] - flow_started < flow_s, "every kill lands during the flow"
    assert ledger.given_up == 0, "a request was refused for a minute"
    assert figures.accepted == figures.events_sent, stats.summary()
    assert figures.accounted == figures.ingested
    assert not any(figures.duplicates.values()), figures.duplicates
    assert not any(figures.lost.values()), figures.lost
    # The flow did what it is for: emails read, links followed, the tree branched both
    # ways on an open (the wait's event, or its timer).
    assert figures.effects["smtp"] > 0, stats.summary()
    assert ledger.links_accepted > 0, stats.summary()
    assert figures.steps.get("nudge", 0) > 0, figures.steps
    assert figures.steps.get("offer-test", 0) > 0, figures.steps
    assert stats.started == PROSPECTS, stats.summary()
