"""The measured numbers of a live journey map, and its moments of pain and of truth.

Stage numbers are the funnel's (same cohort, same definitions). Card numbers come from
the step history and the prospects' timelines: how many runs reached the step, what was
delivered there, who engaged (opened, clicked, watched to a %, downloaded, registered,
attended) and what they felt (feedback emotions).

- A **moment of pain** is a touchpoint whose feedback is mostly negative (at least
  ``pain_negative_share``) or after which many runs end without reaching a later stage
  (at least ``pain_dropoff_share``), judged on at least ``min_sample`` prospects.
- A **moment of truth** is one of the three touchpoints where prospects who engaged
  went on to a later stage most often compared with those who did not (a gap of at least
  ``truth_min_difference``, with ``min_sample`` prospects on each side).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.orchestrator.journey.model import Journey, SendStep, WaitForStep
from shared.db import Connection
from shared.settings import Settings

from ..funnel import funnel
from . import kpis_sql
from .model import CardNumbers, MapNumbers, StageNumbers, VariantNumbers

ENGAGEMENTS = {
    "email_opened": "opened",
    "email_clicked": "clicked",
    "pdf_downloaded": "downloaded",
    "webinar_registered": "registered",
    "webinar_attended": "attended",
    "page_view": "visited",
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    pain_negative_share: float = 0.3
    pain_dropoff_share: float = 0.5
    truth_min_difference: float = 0.2
    min_sample: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            settings.map_pain_negative_share,
            settings.map_pain_dropoff_share,
            settings.map_truth_min_difference,
            settings.map_min_sample,
        )


@dataclass
class _Step:
    reached: int = 0
    dropped: int = 0
    engaged: int = 0
    engaged_converted: int = 0
    idle: int = 0
    idle_converted: int = 0
    delivered: int = 0


async def map_numbers(
    db: Connection | asyncpg.Pool,
    journey: Journey,
    *,
    version: int | None = None,
    persona: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    thresholds: Thresholds = Thresholds(),
) -> MapNumbers:
    funnels = await funnel(db, journey=journey.journey, persona=persona, version=version,
                           since=since, until=until)  # fmt: skip
    stages: dict[str, StageNumbers] = {}
    for f in funnels:
        for s in f.stages:
            seen = stages.get(s.stage)
            stages[s.stage] = StageNumbers(
                entered=s.entered + (seen.entered if seen else 0),
                current=s.current + (seen.current if seen else 0),
                converted=s.converted + (seen.converted if seen else 0),
                dropped=s.dropped + (seen.dropped if seen else 0),
                median_seconds=s.median_seconds if len(funnels) == 1 else None,
            )
    args = (journey.journey, version, persona, since, until)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            steps, touches, goals = await _fetch(conn, args)
    else:
        steps, touches, goals = await _fetch(db, args)
    runs = sum(f.runs for f in funnels)
    return MapNumbers(stages, _cards(journey, steps, touches, goals, runs, thresholds))


async def _fetch(
    conn: Connection, args: tuple[object, ...]
) -> tuple[list[asyncpg.Record], list[asyncpg.Record], list[asyncpg.Record]]:
    return (
        await conn.fetch(kpis_sql.STEPS, *args),
        await conn.fetch(kpis_sql.TOUCHES, *args),
        await conn.fetch(kpis_sql.GOALS, *args),
    )


def _cards(
    journey: Journey,
    steps: list[asyncpg.Record],
    touches: list[asyncpg.Record],
    goals: list[asyncpg.Record],
    runs: int,
    limits: Thresholds,
) -> dict[str, CardNumbers]:
    measured = {r["step"]: _Step(*(r[k] for k in (
        "reached", "dropped", "engaged", "engaged_converted", "idle", "idle_converted",
    ))) for r in steps}  # fmt: skip
    variants = {r["step"]: json.loads(r["variants"]) for r in steps}
    engaged: dict[str, Counter[str]] = {}
    emotions: dict[str, Counter[str]] = {}
    for t in touches:
        step = t["step"]
        if step is None:
            continue
        if t["kind"] == "delivery":
            if t["type"] == "sent":
                measured.setdefault(step, _Step()).delivered += t["events"]
        elif t["type"] == "feedback" and t["emotion"]:
            emotions.setdefault(step, Counter())[t["emotion"]] += t["events"]
        elif t["type"] == "video_progress" and t["percent"]:
            engaged.setdefault(step, Counter())[f"watched {t['percent']}%"] += t["prospects"]
        elif t["type"] in ENGAGEMENTS:
            engaged.setdefault(step, Counter())[ENGAGEMENTS[t["type"]]] += t["prospects"]
    truths = _truths(journey, measured, limits)
    cards: dict[str, CardNumbers] = {"entry": CardNumbers(reached=runs)}
    by_stage = {r["stage"]: r["reached"] for r in goals}
    for i, goal in enumerate(journey.goals):
        cards[f"goal:{i}"] = CardNumbers(reached=by_stage.get(goal.stage, 0))
    for step in journey.steps:
        m = measured.get(step.id, _Step())
        felt = emotions.get(step.id, Counter())
        arms = {
            name: VariantNumbers(assigned, won, won / assigned if assigned else None)
            for name, (assigned, won) in sorted(variants.get(step.id, {}).items())
        }
        cards[step.id] = CardNumbers(
            reached=m.reached,
            delivered=m.delivered,
            engaged=dict(sorted(engaged.get(step.id, Counter()).items())),
            emotions=dict(felt),
            actual_emotion=felt.most_common(1)[0][0] if felt else None,
            pain=_pain(step, m, felt, limits),
            truth=truths.get(step.id),
            variants=arms,
        )
    return cards


def _pain(step: object, m: _Step, felt: Counter[str], limits: Thresholds) -> str | None:
    total = sum(felt.values())
    negative = felt.get("negative", 0)
    if total >= limits.min_sample and negative / total >= limits.pain_negative_share:
        return f"{negative} of {total} feedback negative"
    # Exits end every run by design: only touchpoints (sends, waits for an event) count.
    if isinstance(step, SendStep | WaitForStep) and m.reached >= limits.min_sample:
        share = m.dropped / m.reached
        if share >= limits.pain_dropoff_share:
            return f"{share:.0%} of runs end here ({m.dropped} of {m.reached})"
    return None


def _truths(journey: Journey, measured: dict[str, _Step], limits: Thresholds) -> dict[str, str]:
    gaps = []
    for step in journey.steps:
        m = measured.get(step.id)
        if m is None or min(m.engaged, m.idle) < limits.min_sample:
            continue
        engaged, idle = m.engaged_converted / m.engaged, m.idle_converted / m.idle
        if engaged - idle >= limits.truth_min_difference:
            gaps.append((engaged - idle, step.id, engaged, idle))
    gaps.sort(reverse=True)
    return {
        step: f"{engaged:.0%} of those who engaged reached a later stage, {idle:.0%} of the rest"
        for _, step, engaged, idle in gaps[:3]
    }
