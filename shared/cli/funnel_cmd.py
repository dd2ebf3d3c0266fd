"""``trayecto funnel``: per journey and persona, how far runs got, from PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import typer
from rich import box
from rich.table import Table
from rich.text import Text

from .common import console, friendly_errors, load_settings

if TYPE_CHECKING:
    from services.metrics.funnel import Funnel, StageFunnel

# The metrics package is imported only when the command runs: it pulls in its web
# application, and `trayecto --help` should start fast.

CELL = "each cell: runs that entered the stage · runs in it now · % of them that moved on"
LAST = "(last stage: runs that completed the journey)"


class FunnelCommandError(RuntimeError):
    """The funnel cannot be read (database unreachable or not migrated)."""


def funnel_command(
    journey: str | None = typer.Option(None, "--journey", "-j", help="Only this journey"),
    persona: str | None = typer.Option(None, "--persona", "-p", help="Only this persona"),
    version: int | None = typer.Option(
        None, "--version", "-v", min=1, help="Only runs on this journey version"
    ),
    since: str | None = typer.Option(
        None, help="Runs that entered at or after (ISO 8601; UTC when no offset is given)"
    ),
    until: str | None = typer.Option(None, help="Runs that entered before (ISO 8601)"),
    as_json: bool = typer.Option(False, "--json", help="The whole funnel as JSON"),
) -> None:
    """The funnel: runs per stage, conversion and A/B variants, per journey and persona."""
    from services.metrics.funnel import FunnelQueryError

    start, end = _when(since, "--since"), _when(until, "--until")
    if start is not None and end is not None and end <= start:
        raise typer.BadParameter("must be after --since", param_hint="--until")
    filters: dict[str, Any] = {
        "journey": journey,
        "persona": persona,
        "version": version,
        "since": start,
        "until": end,
    }
    settings = load_settings()
    with friendly_errors(FunnelCommandError, FunnelQueryError, OSError, asyncpg.PostgresError):
        funnels = asyncio.run(fetch(settings.database_url, filters))
    if as_json:
        typer.echo(json.dumps([f.model_dump(mode="json") for f in funnels], indent=2))
        return
    if not funnels:
        chosen = ", ".join(f"{k} {v}" for k, v in filters.items() if v is not None)
        console.print(f"no runs entered a journey{f' ({chosen})' if chosen else ''}")
        return
    _print(funnels)


def _when(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2025-03-01T00:00:00Z)",
            param_hint=option,
        ) from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def fetch(url: str, filters: dict[str, Any]) -> list[Funnel]:
    from services.metrics.funnel import funnel

    try:
        conn = await asyncpg.connect(url, timeout=10)
    except OSError as exc:
        raise FunnelCommandError(
            f"cannot reach PostgreSQL (TRAYECTO_DATABASE_URL): {exc}. Start the local stack "
            "with `trayecto stack up` or point the variable at a running server"
        ) from exc
    try:
        return await funnel(conn, **filters)
    except asyncpg.UndefinedTableError as exc:
        raise FunnelCommandError(
            "the database has no journey history yet: run `trayecto db migrate`"
        ) from exc
    finally:
        await conn.close()


def cell(stage: StageFunnel, last: bool, sep: str = " · ") -> str:
    """``120 · 30 now · 42%``: entered, in the stage now, converted; then the runs that
    completed, in the last stage (or where runs of an older version completed)."""
    parts = [str(stage.entered), f"{stage.current} now"]
    if not last:
        rate = stage.conversion_rate
        parts.append("-" if rate is None else f"{rate:.0%}")
    if last or stage.completed:
        parts.append(f"{stage.completed} done")
    return sep.join(parts)


def tables(funnels: Sequence[Funnel], *, variants: bool = True) -> list[Table]:
    """A persona-by-stage matrix per list of stages (most journeys share the default),
    each followed by its A/B variants when asked and there are some."""
    by_stages: dict[tuple[str, ...], list[Funnel]] = {}
    for f in funnels:
        by_stages.setdefault(tuple(s.stage for s in f.stages), []).append(f)
    found: list[Table] = []
    for stages, group in by_stages.items():
        found.append(matrix(group, stages))
        if variants and any(f.variants for f in group):
            found.append(_variants(group, stages))
    return found


def _print(funnels: Sequence[Funnel]) -> None:
    console.print(f"{CELL} {LAST}", highlight=False)
    for table in tables(funnels):
        console.print(table)


def matrix(funnels: Sequence[Funnel], stages: Sequence[str], sep: str = " · ") -> Table:
    """One row per journey and persona; on a narrow terminal, one line per number."""
    table = Table(box=box.SIMPLE_HEAD, title="Funnel by persona and stage")
    table.add_column("journey")
    table.add_column("persona")
    table.add_column("runs", justify="right")
    for stage in stages:
        table.add_column(stage, justify="right")
    for f in funnels:
        versions = ",".join(f"v{v}" for v in f.versions)
        table.add_row(
            Text(f"{f.journey} ({versions})"),
            Text(f.persona),
            str(f.runs),
            *(Text(cell(s, i == len(f.stages) - 1, sep)) for i, s in enumerate(f.stages)),
        )
    unbounded = console.options.update_width(1_000_000)
    if sep != "\n" and console.measure(table, options=unbounded).maximum > console.width:
        return matrix(funnels, stages, "\n")
    return table


def _variants(funnels: Sequence[Funnel], stages: Sequence[str]) -> Table:
    table = Table(
        box=box.SIMPLE_HEAD,
        title="A/B variants: assigned runs that entered each stage afterwards",
    )
    for name in ("journey", "step", "variant"):
        table.add_column(name, no_wrap=True)
    table.add_column("assigned", justify="right")
    for stage in stages:
        table.add_column(stage, justify="right")
    for f in funnels:
        for arm in f.variants:
            table.add_row(
                Text(f.journey),
                Text(arm.step),
                Text(arm.variant),
                str(arm.assigned),
                *(Text(f"{s.entered} · {s.conversion_rate:.0%}") for s in arm.stages),
            )
    return table
