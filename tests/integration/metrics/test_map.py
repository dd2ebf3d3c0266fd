"""The live journey map: its numbers from a known history, its pages and their errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.metrics.map.kpis import Thresholds, map_numbers
from services.metrics.map.model import VariantNumbers
from services.metrics.map.routes import map_router
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from shared.db import Connection, create_pool, migrate
from shared.http import install_error_handlers
from shared.settings import Settings

JOURNEY = """
journey: mapj
title: Map test
persona: {id: testers}
entry: {event: ad_click}
goals:
  - {event: purchase, stage: customer}
steps:
  - id: hello
    send: {content: hello}
    map: {stage: contact}
  - id: offer
    split:
      - {variant: a, weight: 50, next: pitch}
      - {variant: b, weight: 50, next: pitch}
  - id: pitch
    send: {content: pitch}
  - id: done
    exit: completed
"""
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


async def _history(conn: Connection, runs: int = 20) -> None:
    """Runs 0-5 buy after the pitch, 6-17 end in contact, 18-19 are still there.

    Runs 0-7 open the pitch email; 6 people give feedback on hello, 4 of them negative.
    """
    history, timeline = [], []
    for i in range(runs):
        run, prospect = uuid.uuid4(), f"m{i}"
        at = T0 + timedelta(minutes=i)

        def row(reason: str, frm: str | None, to: str | None, step: str | None = None,
                variant: str | None = None, *, when: datetime, who: str = prospect,
                run_id: uuid.UUID = run) -> None:  # fmt: skip
            history.append((uuid.uuid4(), who, "mapj", 1, "testers", run_id, reason, frm, to,
                            step, variant, when))  # fmt: skip

        def touch(kind: str, type_: str, detail: dict[str, object], *, when: datetime,
                  who: str = prospect) -> None:  # fmt: skip
            timeline.append((uuid.uuid4(), who, kind, type_, type_, "email", when,
                             json.dumps(detail)))  # fmt: skip

        row("entered", None, "stranger", when=at)
        row("step", "stranger", "contact", "hello", when=at + timedelta(seconds=1))
        row("advanced", "stranger", "contact", "hello", when=at + timedelta(seconds=1))
        touch("delivery", "sent", {"journey": "mapj", "step": "hello"}, when=at + timedelta(2))
        row(
            "step",
            "contact",
            "contact",
            "offer",
            "a" if i < 10 else "b",
            when=at + timedelta(seconds=2),
        )
        row("step", "contact", "contact", "pitch", when=at + timedelta(seconds=3))
        if i < 8:
            touch(
                "touchpoint",
                "email_opened",
                {"properties": {"journey": "mapj", "step": "pitch"}},
                when=at + timedelta(seconds=4),
            )
        if i < 2:
            video: dict[str, object] = {
                "properties": {"journey": "mapj", "step": "pitch", "percent": 75}
            }
            touch("touchpoint", "video_progress", video, when=at + timedelta(seconds=4))
        if i < 6:
            emotion = "negative" if i < 4 else "positive"
            touch(
                "touchpoint",
                "feedback",
                {"properties": {"journey": "mapj", "step": "hello"}, "emotion": emotion},
                when=at + timedelta(seconds=4),
            )
            row("goal", "contact", "customer", when=at + timedelta(seconds=5))
        elif i < 18:
            row("step", "contact", "contact", "done", when=at + timedelta(seconds=5))
            row("exited", "contact", None, "done", when=at + timedelta(seconds=5))
    await conn.executemany(
        "INSERT INTO journey_history (event_id, prospect_id, journey, journey_version, persona,"
        " run_id, reason, from_stage, to_stage, step, variant, occurred_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        history,
    )
    await conn.executemany(
        "INSERT INTO prospect_timeline (event_id, prospect_id, kind, type, name, channel,"
        " occurred_at, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
        timeline,
    )


@pytest.fixture
async def pool(fresh_database: str, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    await migrate(fresh_database)
    pool = await create_pool(settings, dsn=fresh_database)
    try:
        async with pool.acquire() as conn:
            await publish(conn, load_journey(JOURNEY), JOURNEY)
            second = JOURNEY.replace("title: Map test", "title: Map test, redesigned")
            await publish(conn, load_journey(second), second)
            await _history(conn)
        yield pool
    finally:
        await pool.close()


async def test_numbers_pain_and_truth_from_the_history(pool: asyncpg.Pool) -> None:
    numbers = await map_numbers(pool, load_journey(JOURNEY), version=1, thresholds=Thresholds())
    assert numbers.stages["contact"].entered == 20
    assert numbers.stages["contact"].current == 2
    assert numbers.stages["customer"].entered == 6
    cards = numbers.cards
    assert cards["entry"].reached == 20
    assert cards["goal:0"].reached == 6
    hello = cards["hello"]
    assert (hello.reached, hello.delivered) == (20, 20)
    assert hello.emotions == {"negative": 4, "positive": 2}
    assert hello.actual_emotion == "negative"
    assert hello.pain == "4 of 6 feedback negative"
    pitch = cards["pitch"]
    assert pitch.reached == 20
    assert pitch.engaged == {"opened": 8, "watched 75%": 2}
    # 12 of 20 runs end in contact after the pitch: at least half, so pain.
    assert pitch.pain == "60% of runs end here (12 of 20)"
    # Engaged: 6 of 8 bought; the others: 0 of 12.
    assert pitch.truth == "75% of those who engaged reached a later stage, 0% of the rest"
    assert hello.truth is None
    assert cards["offer"].variants == {
        "a": VariantNumbers(10, 6, 0.6),
        "b": VariantNumbers(10, 0, 0.0),
    }
    stricter = Thresholds(pain_dropoff_share=0.7, pain_negative_share=0.7, min_sample=5)
    calmer = await map_numbers(pool, load_journey(JOURNEY), version=1, thresholds=stricter)
    assert calmer.cards["pitch"].pain is None
    assert calmer.cards["hello"].pain is None
    later = await map_numbers(
        pool, load_journey(JOURNEY), version=1, since=T0 + timedelta(minutes=10)
    )
    assert later.cards["entry"].reached == 10


async def test_map_pages_and_their_errors(pool: asyncpg.Pool, settings: Settings) -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(map_router(settings))
    app.state.pool = pool
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://map") as client:
        index = await client.get("/map")
        assert index.status_code == 200
        assert 'href="/map/mapj"' in index.text
        assert "Map test, redesigned" in index.text

        live = await client.get("/map/mapj", params={"version": 1})
        assert live.status_code == 200
        assert live.headers["content-type"].startswith("text/html")
        assert "Version 1" in live.text
        assert "Moment of pain" in live.text
        assert "<script" not in live.text

        both = await client.get("/map/mapj", params={"compare": "1,2"})
        assert both.status_code == 200
        assert "Version 1" in both.text
        assert "Version 2" in both.text
        assert both.text.count('role="img"') == 2

        for params, field in (
            ({"compare": "1"}, "compare"),
            ({"since": "soon"}, "since"),
            ({"version": "0"}, "version"),
        ):
            bad = await client.get("/map/mapj", params=params)
            assert bad.status_code == 422, params
            assert field in {e["field"].split(".")[-1] for e in bad.json()["errors"]}
        missing = await client.get("/map/nobody")
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["field"] == "journey"
        no_version = await client.get("/map/mapj", params={"version": 9})
        assert no_version.status_code == 404
        assert no_version.json()["errors"][0]["field"] == "version"
