"""The funnel (library, ``GET /v1/funnel``, ``trayecto funnel``) on a real PostgreSQL.

Run paths are drawn with a seed and written as the orchestrator writes
``journey_history``; the expected funnel is worked out in Python from the paths (stays,
exit, variant assignments), not from the rows, and every number must match, the
percentiles included.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from services.metrics.api import funnel_router
from services.metrics.funnel import FunnelQueryError, UnknownJourneyError, funnel
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from shared.cli.main import app as cli
from shared.db import create_pool, migrate
from shared.settings import Settings

DEFAULT = ["stranger", "visitor", "contact", "prospect", "customer", "promoter"]
BASE = datetime(2025, 3, 1, tzinfo=UTC)
DAY = 86400
SOLO = """
journey: funnel-solo
title: {title}
persona: {{id: owner}}
entry: {{event: lead_captured}}
stages: [{stages}]
steps:
  - id: welcome
    send:
      content: welcome
      variants:
        - {{name: short, content: welcome-short}}
        - {{name: long, content: welcome-long}}
  - id: offer
    split:
      - {{variant: discount, weight: 1, next: done}}
      - {{variant: trial, weight: 1, next: done}}
    map: {{stage: contact}}
  - id: done
    exit: completed
"""
TEAM = """
journey: funnel-team
title: Funnel test, IT teams
persona: {id: it-lead}
entry: {event: form_submitted}
stages: [lead, qualified, trial, customer]
steps:
  - id: pitch
    split:
      - {variant: demo, weight: 1, next: done}
      - {variant: webinar, weight: 1, next: done}
  - id: done
    exit: completed
"""


@dataclass(frozen=True)
class Spec:
    journey: str
    persona: str
    versions: dict[int, list[str]]
    variants: dict[str, list[str]]


SPECS = {
    s.journey: s
    for s in (
        # v2 adds a last stage: the stage order is the latest version's, and v1 runs
        # exiting in promoter still completed their version.
        Spec(
            "funnel-solo",
            "owner",
            {1: DEFAULT, 2: [*DEFAULT, "advocate"]},
            {"welcome": ["long", "short"], "offer": ["discount", "trial"]},
        ),
        Spec("funnel-team", "it-lead", {1: ["lead", "qualified", "trial", "customer"]}, {}),
    )
}


@dataclass
class Run:
    """One run's path, and the journey_history rows the orchestrator writes for it."""

    run_id: uuid.UUID
    spec: Spec
    version: int
    stays: list[tuple[str, datetime]] = field(default_factory=list)
    exited_at: datetime | None = None
    assigned: dict[str, tuple[str, int]] = field(default_factory=dict)  # step → variant, stay
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return self.stays[-1][0]

    def row(self, reason: str, to: str | None, at: datetime, step: str | None = None,
            variant: str | None = None, before: str | None = None) -> None:  # fmt: skip
        before = before if before is not None else (self.stage if self.stays else None)
        self.rows.append((reason, before, to, step, variant, at))

    def move(self, reason: str, stage: str, at: datetime) -> None:
        self.row(reason, stage, at)
        self.stays.append((stage, at))

    def step(self, step: str, at: datetime, variant: str | None = None) -> None:
        self.row("step", self.stage, at, step, variant)
        if variant is not None and step not in self.assigned:
            self.assigned[step] = (variant, len(self.stays) - 1)

    def advance(self, step: str, stage: str, at: datetime, variant: str | None = None) -> None:
        """A step whose map stage moves the run: its step row, then the advanced row."""
        self.row("step", stage, at, step, variant, before=self.stage)
        if variant is not None and step not in self.assigned:
            self.assigned[step] = (variant, len(self.stays) - 1)
        self.move("advanced", stage, at)

    def exit(self, at: datetime) -> None:
        self.row("exited", None, at, "done")
        self.exited_at = at

    def left(self, index: int) -> datetime | None:
        return self.stays[index + 1][1] if index + 1 < len(self.stays) else self.exited_at


def later(rng: random.Random, at: datetime) -> datetime:
    if rng.random() < 0.15:  # several transitions of one input share the time
        return at
    return at + timedelta(seconds=rng.randrange(1, 5 * DAY), microseconds=rng.randrange(10**6))


def draw(rng: random.Random, spec: Spec) -> Run:
    run = Run(uuid.UUID(int=rng.getrandbits(128)), spec, rng.choice(sorted(spec.versions)))
    stages = spec.versions[run.version]
    at = BASE + timedelta(seconds=rng.randrange(30 * DAY), microseconds=rng.randrange(10**6))
    run.move("entered", stages[0], at)
    run.step("intro", at)
    while True:
        for step, names in spec.variants.items():
            if step not in run.assigned and rng.random() < 0.25:
                at = later(rng, at)
                run.step(step, at, rng.choice(names))
            elif step in run.assigned and rng.random() < 0.1:  # a revisit: same variant
                run.step(step, later(rng, at), run.assigned[step][0])
        index, choice = stages.index(run.stage), rng.random()
        if index < len(stages) - 1 and choice < 0.6:
            at = later(rng, at)
            target = stages[min(len(stages) - 1, index + (2 if rng.random() < 0.2 else 1))]
            unassigned = [s for s in spec.variants if s not in run.assigned]
            if rng.random() < 0.4:
                run.move("goal", target, at)
            elif unassigned and rng.random() < 0.5:
                run.advance(unassigned[0], target, at, rng.choice(spec.variants[unassigned[0]]))
            else:
                run.advance("nudge", target, at)
        elif choice < 0.8:
            run.exit(later(rng, at))
            return run
        else:
            return run


def percentile_cont(values: list[float], p: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = p * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    if high == low:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def expected(
    runs: list[Run],
    journey: str | None = None,
    persona: str | None = None,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    cohort = [
        r
        for r in runs
        if journey in (None, r.spec.journey)
        and persona in (None, r.spec.persona)
        and version in (None, r.version)
        and (since is None or r.stays[0][1] >= since)
        and (until is None or r.stays[0][1] < until)
    ]
    funnels = []
    for key in sorted({(r.spec.journey, r.spec.persona) for r in cohort}):
        group = [r for r in cohort if (r.spec.journey, r.spec.persona) == key]
        latest = max(r.version for r in group)
        order = group[0].spec.versions[latest]
        funnels.append(
            {
                "journey": key[0],
                "persona": key[1],
                "version": latest,
                "versions": sorted({r.version for r in group}),
                "runs": len(group),
                "stages": [_stage(group, order, stage) for stage in order],
                "variants": _variants(group, order),
            }
        )
    return funnels


def _stage(group: list[Run], order: list[str], stage: str) -> dict[str, Any]:
    rank = {s: i for i, s in enumerate(order)}
    stays = [(r, i) for r in group for i, (s, _) in enumerate(r.stays) if s == stage]
    entered = len({r.run_id for r, _ in stays})
    converted = len(
        {
            r.run_id
            for r, i in stays
            if i + 1 < len(r.stays) and rank[r.stays[i + 1][0]] > rank[stage]
        }
    )
    ended = [r for r in group if r.exited_at is not None and r.stage == stage]
    completed = sum(1 for r in ended if stage == r.spec.versions[r.version][-1])
    seconds = [(end - r.stays[i][1]).total_seconds() for r, i in stays if (end := r.left(i))]
    return {
        "stage": stage,
        "entered": entered,
        "current": sum(1 for r in group if r.exited_at is None and r.stage == stage),
        "converted": converted,
        "dropped": len(ended) - completed,
        "completed": completed,
        "conversion_rate": converted / entered if entered else None,
        "median_seconds": percentile_cont(seconds, 0.5),
        "p90_seconds": percentile_cont(seconds, 0.9),
    }


def _variants(group: list[Run], order: list[str]) -> list[dict[str, Any]]:
    arms: dict[tuple[str, str], list[tuple[Run, int]]] = {}
    for r in group:
        for step, (variant, stay) in r.assigned.items():
            arms.setdefault((step, variant), []).append((r, stay))
    result = []
    for (step, variant), members in sorted(arms.items()):
        stages = []
        for stage in order:
            reached = sum(1 for r, k in members if any(s == stage for s, _ in r.stays[k + 1 :]))
            stages.append(
                {"stage": stage, "entered": reached, "conversion_rate": reached / len(members)}
            )
        result.append(
            {"step": step, "variant": variant, "assigned": len(members), "stages": stages}
        )
    return result


async def write(conn: asyncpg.Connection, runs: list[Run]) -> None:
    """The rows of every run, in time order (one run's rows in the order they happen)."""
    rows = sorted(
        ((r, row) for r in runs for row in r.rows), key=lambda item: item[1][5]
    )  # stable: equal times keep the run's own order, so the ids do too
    await conn.copy_records_to_table(
        "journey_history",
        columns=["event_id", "prospect_id", "journey", "journey_version", "persona", "run_id",
                 "reason", "from_stage", "to_stage", "step", "variant", "occurred_at"],
        records=[
            (uuid.uuid4(), f"p-{r.run_id.hex[:8]}", r.spec.journey, r.version, r.spec.persona,
             r.run_id, *row)
            for r, row in rows
        ],
    )  # fmt: skip


async def publish_journeys(conn: asyncpg.Connection) -> None:
    for version, stages in SPECS["funnel-solo"].versions.items():
        await publish_solo(conn, f"Funnel test v{version}", stages)
    await publish(conn, load_journey(TEAM), TEAM)


async def publish_solo(conn: asyncpg.Connection, title: str, stages: list[str]) -> None:
    text = SOLO.format(title=title, stages=", ".join(stages))
    await publish(conn, load_journey(text), text)


@dataclass
class Seeded:
    dsn: str
    conn: asyncpg.Connection
    runs: list[Run]


@pytest.fixture
async def seeded(fresh_database: str) -> AsyncIterator[Seeded]:
    await migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    rng = random.Random(20250301)
    runs = [draw(rng, SPECS["funnel-solo"]) for _ in range(500)]
    runs += [draw(rng, SPECS["funnel-team"]) for _ in range(150)]
    try:
        await publish_journeys(conn)
        await write(conn, runs)
        yield Seeded(fresh_database, conn, runs)
    finally:
        await conn.close()


def dump(funnels: list[Any]) -> list[dict[str, Any]]:
    return [f.model_dump() for f in funnels]


# ---------------------------------------------------------------- the library


async def test_every_number_matches_the_drawn_paths(seeded: Seeded) -> None:
    conn, runs = seeded.conn, seeded.runs
    everything = expected(runs)
    assert [(f["journey"], f["persona"]) for f in everything] == [
        ("funnel-solo", "owner"),
        ("funnel-team", "it-lead"),
    ]
    assert dump(await funnel(conn)) == everything
    solo = everything[0]
    assert [s["stage"] for s in solo["stages"]] == [*DEFAULT, "advocate"]
    assert solo["versions"] == [1, 2]
    # The paths cover what the definitions distinguish.
    by_stage = {s["stage"]: s for s in solo["stages"]}
    assert by_stage["promoter"]["completed"] > 0, "v1 runs completed in promoter"
    assert by_stage["promoter"]["dropped"] > 0, "v2 runs that left in promoter dropped"
    assert by_stage["advocate"]["completed"] > 0
    assert by_stage["advocate"]["dropped"] == 0
    assert all(s["current"] > 0 and s["median_seconds"] is not None for s in solo["stages"])
    assert {(v["step"], v["variant"]) for v in solo["variants"]} == {
        ("offer", "discount"), ("offer", "trial"), ("welcome", "long"), ("welcome", "short"),
    }  # fmt: skip


@pytest.mark.parametrize(
    "filters",
    [
        {"journey": "funnel-team"},
        {"persona": "owner"},
        {"journey": "funnel-solo", "version": 1},
        {"since": BASE + timedelta(days=10)},
        {"until": BASE + timedelta(days=12, hours=5)},
        {"since": BASE + timedelta(days=8), "until": BASE + timedelta(days=20)},
        {
            "persona": "it-lead",
            "since": BASE + timedelta(days=3),
            "until": BASE + timedelta(days=9),
        },
    ],
    ids=lambda f: ",".join(f),
)
async def test_filters_choose_the_cohort(seeded: Seeded, filters: dict[str, Any]) -> None:
    want = expected(seeded.runs, **filters)
    assert want
    assert want != expected(seeded.runs), "the filter leaves runs out"
    assert dump(await funnel(seeded.conn, **filters)) == want


async def test_version_filter_takes_that_versions_stage_order(seeded: Seeded) -> None:
    (v1,) = await funnel(seeded.conn, journey="funnel-solo", version=1)
    assert [s.stage for s in v1.stages] == DEFAULT
    assert v1.stages[-1].dropped == 0
    assert v1.stages[-1].completed > 0


async def test_naive_bounds_are_utc_and_bad_ones_are_refused(seeded: Seeded) -> None:
    since = BASE + timedelta(days=4)
    aware = await funnel(seeded.conn, since=since)
    assert await funnel(seeded.conn, since=since.replace(tzinfo=None)) == aware
    assert await funnel(seeded.conn, since=BASE + timedelta(days=40)) == []
    with pytest.raises(FunnelQueryError) as bad:
        await funnel(seeded.conn, since=since, until=since)
    assert bad.value.field == "until"
    with pytest.raises(UnknownJourneyError) as unknown:
        await funnel(seeded.conn, journey="nope")
    assert unknown.value.field == "journey"
    with pytest.raises(UnknownJourneyError) as no_version:
        await funnel(seeded.conn, journey="funnel-team", version=3)
    assert no_version.value.field == "version"


async def test_a_hand_worked_funnel(fresh_database: str) -> None:
    """Four runs worked out by hand: a drop, a completion, one still in the first stage,
    one in a stage the definition does not have (it comes last)."""
    await migrate(fresh_database)
    spec = Spec("funnel-solo", "owner", {1: DEFAULT}, {})
    t0 = BASE
    dropped, completed, waiting, off_map = (Run(uuid.uuid4(), spec, 1) for _ in range(4))
    for run in (dropped, completed, waiting, off_map):
        run.move("entered", "stranger", t0)
    dropped.move("goal", "visitor", t0 + timedelta(seconds=10))
    dropped.exit(t0 + timedelta(seconds=70))
    completed.advance("offer", "contact", t0 + timedelta(seconds=20), "trial")
    for seconds, name in ((30, "prospect"), (40, "customer"), (50, "promoter")):
        completed.move("goal", name, t0 + timedelta(seconds=seconds))
    completed.exit(t0 + timedelta(seconds=100))
    off_map.move("goal", "vip", t0 + timedelta(seconds=5))
    conn = await asyncpg.connect(fresh_database)
    try:
        await publish_solo(conn, "Hand-worked", DEFAULT)
        await write(conn, [dropped, completed, waiting, off_map])
        (result,) = await funnel(conn)
    finally:
        await conn.close()

    def stage(
        name: str, *counts: int, rate: float | None, times: tuple[float | None, ...]
    ) -> dict[str, Any]:
        entered, current, converted, drop, done = counts
        return {"stage": name, "entered": entered, "current": current, "converted": converted,
                "dropped": drop, "completed": done, "conversion_rate": rate,
                "median_seconds": times[0], "p90_seconds": times[-1]}  # fmt: skip

    assert result.model_dump() == {
        "journey": "funnel-solo",
        "persona": "owner",
        "version": 1,
        "versions": [1],
        "runs": 4,
        "stages": [
            # Left after 10 s, 20 s and 5 s: median 10, p90 10 + (20 - 10) * 0.8.
            stage("stranger", 4, 1, 3, 0, 0, rate=0.75, times=(10.0, 18.0)),
            stage("visitor", 1, 0, 0, 1, 0, rate=0.0, times=(60.0,)),
            stage("contact", 1, 0, 1, 0, 0, rate=1.0, times=(10.0,)),
            stage("prospect", 1, 0, 1, 0, 0, rate=1.0, times=(10.0,)),
            stage("customer", 1, 0, 1, 0, 0, rate=1.0, times=(10.0,)),
            stage("promoter", 1, 0, 0, 0, 1, rate=0.0, times=(50.0,)),
            stage("vip", 1, 1, 0, 0, 0, rate=0.0, times=(None,)),
        ],
        "variants": [
            {
                "step": "offer",
                "variant": "trial",
                "assigned": 1,
                # The step's own stage move comes after the assignment: it counts.
                "stages": [
                    {
                        "stage": s,
                        "entered": int(s in DEFAULT[2:]),
                        "conversion_rate": float(s in DEFAULT[2:]),
                    }
                    for s in [*DEFAULT, "vip"]
                ],
            }
        ],
    }


# ---------------------------------------------------------------- HTTP


async def test_http_endpoint(seeded: Seeded, settings: Settings) -> None:
    pool = await create_pool(settings, dsn=seeded.dsn)
    app = FastAPI()
    app.include_router(funnel_router())
    app.state.pool = pool
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
            everything = await client.get("/v1/funnel")
            assert everything.status_code == 200
            assert everything.json() == expected(seeded.runs)
            chosen = await client.get(
                "/v1/funnel",
                params={"journey": "funnel-solo", "persona": "owner", "version": "2",
                        "since": "2025-03-05T00:00:00Z", "until": "2025-03-20T12:00:00+00:00"},
            )  # fmt: skip
            assert chosen.status_code == 200
            assert chosen.json() == expected(
                seeded.runs, journey="funnel-solo", persona="owner", version=2,
                since=BASE + timedelta(days=4), until=BASE + timedelta(days=19, hours=12),
            )  # fmt: skip
            for params, bad in (
                ({"since": "last tuesday"}, "since"),
                ({"until": "2025-13-01"}, "until"),
                ({"since": "2025-03-05T00:00:00Z", "until": "2025-03-05T00:00:00Z"}, "until"),
                ({"since": "2025-03-05T00:00:00Z", "until": "2025-03-04T00:00:00Z"}, "until"),
                ({"version": "0"}, "version"),
                ({"version": "two"}, "version"),
            ):
                invalid = await client.get("/v1/funnel", params=params)
                assert invalid.status_code == 422, params
                body = invalid.json()
                assert body["error"] == "invalid"
                assert [e["field"] for e in body["errors"]] == [bad], body
                assert bad in body["message"]
            for params, bad in (
                ({"journey": "nope"}, "journey"),
                ({"journey": "funnel-team", "version": "2"}, "version"),
            ):
                missing = await client.get("/v1/funnel", params=params)
                assert missing.status_code == 404
                body = missing.json()
                assert body["error"] == "not_found"
                assert [e["field"] for e in body["errors"]] == [bad]
            nobody = await client.get("/v1/funnel", params={"since": "2026-01-01T00:00:00Z"})
            assert nobody.json() == []
    finally:
        await pool.close()
    operation = app.openapi()["paths"]["/v1/funnel"]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["items"]["$ref"].endswith("/Funnel")
    assert {"404", "422"} <= set(operation["responses"])
    assert {p["name"] for p in operation["parameters"]} == {
        "journey", "persona", "version", "since", "until",
    }  # fmt: skip


# ---------------------------------------------------------------- CLI


def cell_text(stage: dict[str, Any], last: bool) -> str:
    parts = [str(stage["entered"]), f"{stage['current']} now"]
    if not last:
        rate = stage["conversion_rate"]
        parts.append("-" if rate is None else f"{rate:.0%}")
    if last or stage["completed"]:
        parts.append(f"{stage['completed']} done")
    return " · ".join(parts)


async def trayecto(dsn: str, *args: str) -> Any:
    env = {"TRAYECTO_DATABASE_URL": dsn, "COLUMNS": "400"}
    return await asyncio.to_thread(CliRunner().invoke, cli, ["funnel", *args], env=env)


async def test_cli_matrix_and_json(seeded: Seeded) -> None:
    shown = await trayecto(seeded.dsn)
    assert shown.exit_code == 0, shown.output
    assert "each cell: runs that entered the stage" in shown.stdout
    lines = shown.stdout.splitlines()
    for f in expected(seeded.runs):
        row = next(line for line in lines if line.strip().startswith(f["journey"] + " ("))
        assert f" {f['persona']} " in row
        assert f" {f['runs']} " in row
        cells = [cell_text(s, i == len(f["stages"]) - 1) for i, s in enumerate(f["stages"])]
        at = 0
        for text in cells:  # in stage order
            found = row.find(text, at)
            assert found > at, (text, row)
            at = found + len(text)
    # One matrix per list of stages: the columns are the stages, in order.
    headers = [line.split() for line in lines if line.split()[:3] == ["journey", "persona", "runs"]]
    assert headers == [
        ["journey", "persona", "runs", *DEFAULT, "advocate"],
        ["journey", "persona", "runs", "lead", "qualified", "trial", "customer"],
    ]

    as_json = await trayecto(seeded.dsn, "--json", "--persona", "it-lead", "--since", "2025-03-10")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == expected(
        seeded.runs, persona="it-lead", since=BASE + timedelta(days=9)
    )


async def test_cli_errors(seeded: Seeded) -> None:
    unknown = await trayecto(seeded.dsn, "--journey", "nope")
    assert unknown.exit_code == 1
    assert "no journey 'nope' is published" in unknown.output
    bad = await trayecto(seeded.dsn, "--since", "yesterday")
    assert bad.exit_code == 2
    assert "--since" in bad.output
    backwards = await trayecto(seeded.dsn, "--since", "2025-03-05", "--until", "2025-03-05T00:00Z")
    assert backwards.exit_code == 2
    assert "--until" in backwards.output
    empty = await trayecto(seeded.dsn, "--since", "2030-01-01")
    assert empty.exit_code == 0
    assert "no runs entered a journey" in empty.output
    base, _, _ = seeded.dsn.rpartition("@")
    down = await trayecto(f"{base}@127.0.0.1:1/trayecto")
    assert down.exit_code == 1
    assert down.output.count("\n") == 1, down.output
    assert "cannot reach PostgreSQL (TRAYECTO_DATABASE_URL)" in down.output
