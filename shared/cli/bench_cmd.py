"""``trayecto bench [ingest] [orchestrator] [delivery] [e2e] [--json]``: figures next to limits."""

from __future__ import annotations

import asyncio
import json
import os
import platform
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from ..bench import Report
from .common import console, err_console, load_settings

BENCHES = ("ingest", "orchestrator", "delivery", "e2e")


HELP_WHICH = f"Which benchmarks ({', '.join(BENCHES)}); default all"


def bench(
    which: Annotated[list[str] | None, typer.Argument(help=HELP_WHICH)] = None,
    seconds: Annotated[
        float, typer.Option(min=1.0, max=300.0, help="Seconds per measured phase")
    ] = 5.0,
    rounds: Annotated[
        int, typer.Option(min=1, max=20, help="Rounds; each figure is the median round")
    ] = 3,
    events: Annotated[
        int, typer.Option(min=100, help="Orchestrator: events (prospects) per round")
    ] = 20_000,
    timers: Annotated[
        int, typer.Option(min=100, help="Orchestrator: due timers fired per phase")
    ] = 20_000,
    pending_timers: Annotated[
        int, typer.Option(min=0, help="Orchestrator: timers pending far ahead meanwhile")
    ] = 1_000_000,
    emails: Annotated[
        int, typer.Option(min=100, help="Delivery: emails (commands) per round")
    ] = 3_000,
    delivery_concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, max=256, help="Delivery: sends in flight (default TRAYECTO_DELIVERY_CONCURRENCY)"
        ),
    ] = None,
    e2e_events: Annotated[
        int, typer.Option(min=100, help="End to end: events per sustained phase")
    ] = 30_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON")] = False,
) -> None:
    """Measure throughput against the running stack (`trayecto stack up` first)."""
    chosen = which or list(BENCHES)
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        err_console.print(
            f"[red]Unknown benchmark(s)[/] {', '.join(unknown)}; choose from {', '.join(BENCHES)}"
        )
        raise typer.Exit(2)
    settings = load_settings()
    report = Report(
        context={
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": str(os.cpu_count()),
            "python": platform.python_version(),
            "kafka": settings.kafka_bootstrap,
            "seconds_per_phase": f"{seconds:g}",
            "rounds": str(rounds),
        }
    )
    out = err_console if as_json else console
    with out.status("benchmarking…") as status:
        if "ingest" in chosen:
            from ..bench import ingest

            asyncio.run(
                ingest.run(settings, report, seconds, rounds, lambda text: status.update(text))
            )
        if "orchestrator" in chosen:
            from ..bench import orchestrator

            sizes = orchestrator.Sizes(events, timers, pending_timers)
            asyncio.run(
                orchestrator.run(settings, report, rounds, lambda text: status.update(text), sizes)
            )
        if "delivery" in chosen:
            from ..bench import delivery

            mail = delivery.Sizes(emails, delivery_concurrency)
            asyncio.run(
                delivery.run(settings, report, rounds, lambda text: status.update(text), mail)
            )
        if "e2e" in chosen:
            from ..bench import pipeline

            asyncio.run(
                pipeline.run(settings, report, seconds, e2e_events, lambda t: status.update(t))
            )
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    table = Table("figure", "value", "unit", title="Trayecto benchmarks")
    for figure in report.figures:
        table.add_row(
            figure.key,
            f"{figure.value:,.3f}" if figure.unit in ("ratio", "s") else f"{figure.value:,.0f}",
            figure.unit,
        )
    console.print(table)
