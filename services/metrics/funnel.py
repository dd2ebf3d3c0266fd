"""The funnel, computed exactly from the orchestrator's step history (``journey_history``).

It only reads PostgreSQL, so it is exact and the same after any restart. Definitions:

- **Cohort**: the runs whose ``entered`` row (the run's start) occurred in
  ``[since, until)`` (either bound optional), of the given journey, persona and version
  (each optional). Everything those runs did afterwards counts, up to now.
- One :class:`Funnel` per (journey, persona). Its stages are in the order of the journey
  definition of the latest version in the cohort (the default funnel is stranger →
  visitor → contact → prospect → customer → promoter); a stage only other versions had
  comes after them, by name.
- A run **enters** a stage with an ``entered``, ``advanced`` or ``goal`` row whose
  ``to_stage`` is the stage; its **stay** lasts until its next such row or its
  ``exited`` row (rows of one input share ``occurred_at``: the row id orders them).
- Per stage: ``entered``, runs that entered it; ``current``, runs without an ``exited``
  row whose latest stay is in it; ``converted``, runs that moved from it to a later
  stage; ``dropped``, runs that exited while in it, except in the last stage of the
  run's own journey version, where they are ``completed``; ``conversion_rate`` =
  converted / entered (null when nobody entered); ``median_seconds`` and
  ``p90_seconds``, the time in the stage over the stays that ended (the run moved on or
  exited; ``percentile_cont``, so linear interpolation), null when none did. A run
  that stayed in a stage twice (``allow_backward``) counts once; each stay is a sample.
- Per A/B variant (``step`` rows with a variant: split arms and content variants of
  sends): a run is **assigned** the variant of the first such row of that step; per
  stage, ``entered`` counts the assigned runs that entered the stage after that row and
  ``conversion_rate`` = entered / assigned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from pydantic import BaseModel, Field

from shared.contract.enums import Stage
from shared.db import Connection

from . import funnel_sql

Database = Connection | asyncpg.Pool
"""A connection, or a pool to take one from."""
DEFAULT_STAGES = [s.value for s in Stage]
# Compiling the plan's many expressions costs more than the queries take to run.
_NO_JIT = "SET LOCAL jit = off"


class FunnelQueryError(ValueError):
    """A funnel query that cannot be answered; ``field`` names the bad parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class UnknownJourneyError(FunnelQueryError):
    """The journey (or that version of it) was never published."""


class StageFunnel(BaseModel):
    """One stage of a funnel (definitions: docs/metrics.md, section Funnel)."""

    stage: str
    entered: int = Field(description="Runs of the cohort that entered the stage")
    current: int = Field(description="Active runs whose latest stage is this one")
    converted: int = Field(description="Runs that moved from this stage to a later one")
    dropped: int = Field(description="Runs that exited in this stage (not the last stage)")
    completed: int = Field(
        description="Runs that exited in the last stage of their journey version"
    )
    conversion_rate: float | None = Field(description="converted / entered; null if 0 entered")
    median_seconds: float | None = Field(
        description="Median time in the stage of the stays that ended"
    )
    p90_seconds: float | None = Field(description="90th percentile of the same")


class VariantStage(BaseModel):
    """The runs given one variant that went on to enter one stage."""

    stage: str
    entered: int = Field(description="Assigned runs that entered the stage after the assignment")
    conversion_rate: float = Field(description="entered / assigned")


class VariantFunnel(BaseModel):
    """One A/B variant at one step, and the stages its runs entered afterwards."""

    step: str = Field(description="The split step, or the send step with content variants")
    variant: str
    assigned: int = Field(description="Runs of the cohort that were given this variant there")
    stages: list[VariantStage]


class Funnel(BaseModel):
    """The funnel of one journey and persona: every stage in order, every variant."""

    journey: str
    persona: str
    version: int = Field(description="Latest version in the cohort: the stage order is its")
    versions: list[int] = Field(description="Every version the cohort's runs are on")
    runs: int = Field(description="Runs in the cohort")
    stages: list[StageFunnel]
    variants: list[VariantFunnel]


async def funnel(
    conn_or_pool: Database,
    *,
    journey: str | None = None,
    persona: str | None = None,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Funnel]:
    """One funnel per (journey, persona) of the cohort, by journey then persona.

    Naive datetimes are UTC. Raises :class:`FunnelQueryError` for a bad parameter
    (``until`` not after ``since``, ``version`` below 1) and :class:`UnknownJourneyError`
    for a journey or version never published; an empty cohort gives an empty list.
    """
    since, until = _utc(since), _utc(until)
    if version is not None and version < 1:
        raise FunnelQueryError("version", "version must be 1 or more")
    if since is not None and until is not None and until <= since:
        raise FunnelQueryError("until", "until must be after since")
    args = (journey, persona, version, since, until, DEFAULT_STAGES)
    async with _transaction(conn_or_pool) as conn:
        if journey is not None:
            await _check_known(conn, journey, version)
        stage_rows = await conn.fetch(funnel_sql.STAGES, *args)
        variant_rows = await conn.fetch(funnel_sql.VARIANTS, *args)
    funnels: dict[tuple[str, str], Funnel] = {}
    for row in stage_rows:
        key = (row["journey"], row["persona"])
        if key not in funnels:
            funnels[key] = Funnel(
                journey=row["journey"],
                persona=row["persona"],
                version=row["version"],
                versions=list(row["versions"]),
                runs=row["runs"],
                stages=[],
                variants=[],
            )
        funnels[key].stages.append(StageFunnel.model_validate(dict(row)))
    for row in variant_rows:
        arms = funnels[(row["journey"], row["persona"])].variants
        if not arms or (arms[-1].step, arms[-1].variant) != (row["step"], row["variant"]):
            arms.append(
                VariantFunnel(
                    step=row["step"], variant=row["variant"], assigned=row["assigned"], stages=[]
                )
            )
        arms[-1].stages.append(VariantStage.model_validate(dict(row)))
    return list(funnels.values())


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@asynccontextmanager
async def _transaction(db: Database) -> AsyncIterator[Connection]:
    """One snapshot for every query, so the stage and variant numbers agree."""
    if isinstance(db, asyncpg.Pool):
        async with (
            db.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            await conn.execute(_NO_JIT)
            yield conn
    elif db.is_in_transaction():  # the caller's transaction decides
        yield db
    else:
        async with db.transaction(isolation="repeatable_read", readonly=True):
            await db.execute(_NO_JIT)
            yield db


async def _check_known(conn: Connection, journey: str, version: int | None) -> None:
    row = await conn.fetchrow(funnel_sql.KNOWN, journey, version)
    assert row is not None  # an aggregate always gives a row
    if not row["journey_known"]:
        raise UnknownJourneyError("journey", f"no journey {journey!r} is published")
    if version is not None and not row["version_known"]:
        raise UnknownJourneyError(
            "version", f"journey {journey!r} has no version {version} (versions: {row['versions']})"
        )
