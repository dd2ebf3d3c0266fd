"""The campaign simulator against the real platform: ingest, orchestrator and delivery on
free ports, a fresh database and their own topics, the seed journeys and content, and a
private SMTP capture writing to a Maildir that the simulator reads.

Besides the seed journeys (whose later emails wait for days or for a weekday morning),
a test journey sends a video, a PDF and a webinar invitation right after the lead, so
that every kind of tracked link is followed within the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from services.delivery import create_app as create_delivery
from services.delivery.content.store import publish as publish_content
from services.delivery.worker import DeliveryTopics
from services.ingest import create_app as create_ingest
from services.ingest.sources import add_source
from services.orchestrator import create_app as create_orchestrator
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish, publish_directory
from services.orchestrator.topics import OrchestratorTopics
from shared.bench.resources import throwaway_database
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.simulate import Profile, Stats, parse_profile, simulate
from shared.simulate.stats import TOUCHPOINT_OF_LINK

from .ingest.conftest import free_port, serve
from .names import topic_prefix

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "it"
SEED = 20
PROSPECTS = 30
SHOWCASE = """
journey: sim-showcase
title: Simulator test - a video, a PDF and a webinar right after the lead
persona:
  id: sim-showcase
  title: Simulator test persona
entry:
  event: ad_click
  when: {field: campaign.name, startswith: demo-}
goals:
  - {event: page_view, stage: visitor}
  - {event: form_submitted, stage: contact}
  - {event: purchase, stage: customer}
steps:
  - id: await-lead
    wait_for: {event: form_submitted, timeout: 1d}
    next: video
    on_timeout: gone
  - id: video
    send: {content: it-video-intro, type: video}
  - id: pdf
    send: {content: it-pdf-summary, type: pdf}
  - id: webinar
    send: {content: it-webinar-invite, type: webinar_invite}
  - id: await-feedback
    wait_for: {event: feedback, timeout: 7d}
    next: done
    on_timeout: done
  - id: done
    exit: completed
  - id: gone
    exit: no-lead
"""


def midday_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon: no journey's quiet hours hold a send."""
    offset = 12 - now.hour
    offset = offset - 24 if offset > 14 else offset + 24 if offset < -12 else offset
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def simulation_profile(now: datetime) -> Profile:
    data: dict[str, Any] = yaml.safe_load(
        (ROOT / "shared/simulate/profiles/default.yaml").read_text()
    )
    zone = {"value": midday_zone(now)}
    for persona in data["personas"].values():
        persona["traits"]["timezone"] = zone
        persona["visit"]["probability"] = 0.9
        persona["lead"]["probability"] = 0.8
    data["personas"]["smb-owner"]["weight"] = 2
    data["personas"]["it-manager"]["weight"] = 2
    data["personas"]["procurement-lead"]["weight"] = 1
    data["personas"]["sim-showcase"] = {
        "weight": 3,
        "journey_prefix": "demo-",
        "campaigns": ["demo-simulator"],
        "utm": [{"source": "google", "medium": "cpc"}],
        "landing_url": "https://trayecto.example/demo",
        "traits": {"timezone": zone, "locale": {"choices": {"es": 1, "en": 1}}},
        "visit": {"probability": 1.0, "pages": [1, 2], "paths": ["/demo", "/precios"]},
        "lead": {"probability": 1.0, "event": "form_submitted"},
        "conversions": [
            {"stage": "contact", "event": "purchase", "probability": 0.5, "to": "customer"}
        ],
        "email": {
            "contact": {
                "open": 1.0,
                "click": 0.6,
                "video": [[0, 0.1], [50, 0.3], [100, 0.6]],
                "pdf": 0.8,
                "webinar_register": 0.8,
                "webinar_attend": 0.7,
                "feedback": 0.6,
                "feedback_negative": 0.4,
                "unsubscribe": 0.15,
            }
        },
    }
    data.update(patience_s=6, think_s=[0.05, 0.2], video_beacon_s=0.05)
    return parse_profile(data)


@dataclass
class Platform:
    settings: Settings
    dsn: str
    ingest_url: str
    write_key: str
    maildir: Path

    async def timeline(self) -> Counter[str]:
        """Touchpoints by type (and identifies) the orchestrator recorded for the run."""
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT coalesce(type, kind) AS t, count(*) AS n FROM prospect_timeline"
                " WHERE (prospect_id LIKE $1 OR prospect_id LIKE $2)"
                " AND kind IN ('touchpoint', 'identify') GROUP BY 1",
                f"sim-{RUN_ID}-%",
                f"anon-sim-{RUN_ID}-%",  # the ad click and visits before the lead form
            )
        finally:
            await conn.close()
        return Counter({r["t"]: r["n"] for r in rows})


def _smtp_ready(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=1) as client:
            return client.noop()[0] == 250
    except (OSError, smtplib.SMTPException):
        return False


@contextlib.contextmanager
def mail_capture(maildir: Path) -> Any:
    """The local stack's SMTP capture (``shared.stack.mailcapture``) on a free port."""
    port = free_port()
    maildir.parent.mkdir(parents=True, exist_ok=True)  # as the stack's MailCapture.prepare
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.stack.mailcapture", str(port), str(maildir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if _smtp_ready(port):
                break
            assert process.poll() is None, "the mail capture exited"
            subprocess.run(["sleep", "0.1"], check=True)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.asynccontextmanager
async def platform(settings: Settings, tmp: Path) -> AsyncIterator[Platform]:
    async with throwaway_database(settings) as dsn:
        await migrate(dsn)
        prefix = topic_prefix()
        topics = OrchestratorTopics.prefixed(prefix)
        out = DeliveryTopics(outcomes=topics.outcomes, dead_letters=f"{prefix}delivery.dlq")
        await ensure_topics(settings, [*topics.all, out.dead_letters], partitions=3)
        conn = await asyncpg.connect(dsn)
        try:
            await publish_directory(conn, ROOT / "journeys")
            await publish(conn, load_journey(SHOWCASE), SHOWCASE)
            await publish_content(conn, settings.content_dir)
            key = (await add_source(conn, "simulator-test")).write_key
        finally:
            await conn.close()
        maildir = tmp / "capture"
        with mail_capture(maildir) as smtp_port:
            port = free_port()
            app = settings.model_copy(
                update={
                    "database_url": dsn,
                    "ingest_port": port,
                    "public_url": f"http://127.0.0.1:{port}",
                    "smtp_url": f"smtp://127.0.0.1:{smtp_port}",
                    "delivery_retry_base_s": 0.3,
                    "delivery_rate_limits": "email=1000,webhook=1000",
                }
            )
            group = uuid.uuid4().hex[:8]
            servers = [
                await serve(create_ingest(app, touchpoints_topic=topics.touchpoints), port),
                await serve(
                    create_orchestrator(app, topics=topics, group=f"test-orch-{group}"),
                    free_port(),
                ),
                await serve(
                    create_delivery(
                        app, commands_topic=topics.commands, topics=out, group=f"test-del-{group}"
                    ),
                    free_port(),
                ),
            ]
            try:
                yield Platform(app, dsn, f"http://127.0.0.1:{port}", key, maildir)
            finally:
                for server, _ in servers:
                    server.should_exit = True
                await asyncio.gather(*(task for _, task in servers))


async def run_simulation(p: Platform, profile: Profile) -> Stats:
    return await simulate(
        p.settings,
        prospects=PROSPECTS,
        rate=20,
        seed=SEED,
        personas=None,
        duration=60,
        ingest_url=p.ingest_url,
        write_key=p.write_key,
        maildir=p.maildir,
        profile=profile,
        run_id=RUN_ID,
    )


async def recorded(p: Platform, expected: Counter[str], timeout_s: float = 20.0) -> Counter[str]:
    """The timeline once it holds ``expected`` (or whatever it holds at the timeout)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await p.timeline()
        if found == expected or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.5)


@pytest.mark.timeout(150)
async def test_simulated_campaign_reaches_the_timeline_and_is_deterministic(
    settings: Settings, tmp_path: Path
) -> None:
    profile = simulation_profile(datetime.now(UTC))
    runs: list[Stats] = []
    for n in range(2):
        async with platform(settings, tmp_path / f"run{n}") as p:
            stats = await run_simulation(p, profile)
            expected = Counter(stats.touchpoints)
            expected["identify"] = stats.events["identify"]
            found = await recorded(p, +expected)
            assert found == +expected, stats.summary()
        assert (stats.started, stats.finished) == (PROSPECTS, PROSPECTS), stats.summary()
        assert not stats.errors, stats.summary()
        assert stats.elapsed < 60
        runs.append(stats)
    first, second = runs
    assert first.emails > 0
    for kind, touchpoint in TOUCHPOINT_OF_LINK.items():
        assert first.links[kind] > 0, f"no {kind} link followed:\n{first.summary()}"
        assert first.touchpoints[touchpoint] > 0, touchpoint
    assert first.links["video_page"] > 0
    # The same seed on a fresh platform: the same prospects doing the same things.
    assert second.personas == first.personas
    assert second.events == first.events
    assert second.emails == first.emails
    assert second.links == first.links
    assert second.touchpoints == first.touchpoints
