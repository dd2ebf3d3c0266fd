"""``trayecto simulate``: synthetic prospects through a running platform (docs/simulator.md)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from pathlib import Path
from typing import Annotated

import asyncpg
import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.ingest.sources import SourceError, add_source

from ..settings import Settings, without_password
from ..simulate import ProfileError, Stats, load_profile, simulate
from ..stack.mailcapture import MailCapture
from .common import console, err_console, friendly_errors, load_settings

RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def _reachable(url: str) -> bool:
    try:
        return httpx.get(f"{url}/livez", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


async def new_source(settings: Settings, name: str) -> str:
    """A new source named ``name``; its write key (shown once, stored hashed)."""
    conn = await asyncpg.connect(settings.database_url, timeout=5)
    try:
        return (await add_source(conn, name)).write_key
    finally:
        await conn.close()


def _write_key(settings: Settings, run_id: str, out: Console) -> str:
    name = f"simulator-{run_id}"
    try:
        key = asyncio.run(new_source(settings, name))
    except (OSError, asyncpg.PostgresError, SourceError, TimeoutError) as exc:
        database = escape(without_password(settings.database_url))
        err_console.print(
            f"[red]Error:[/] cannot create a source on {database} ({exc}); "
            "pass --write-key KEY, or run `trayecto up` first",
            soft_wrap=True,
        )
        raise typer.Exit(1) from exc
    out.print(f"created source [bold]{name}[/] for this run (pass --write-key to use another)")
    return key


def _table(stats: Stats) -> Table:
    table = Table(title="Simulation")
    table.add_column("what")
    table.add_column("count", justify="right")
    for what, value in stats.rows():
        table.add_row(escape(what), escape(value))
    return table


def simulate_command(
    prospects: Annotated[int, typer.Option(min=1, help="How many prospects")] = 100,
    rate: Annotated[float, typer.Option(min=0.001, help="New prospects per second")] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed of every decision (same seed, same plan)")] = 1,
    personas: Annotated[
        str | None, typer.Option(help="Comma-separated personas of the profile (default all)")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(min=0.1, help="Stop after this many seconds (in-flight prospects finish)"),
    ] = None,
    profile: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Profile YAML (default: the built-in one)"),
    ] = None,
    ingest_url: Annotated[
        str | None, typer.Option(help="Ingest base URL (default http://127.0.0.1:<ingest port>)")
    ] = None,
    write_key: Annotated[
        str | None, typer.Option(help="Write key of a source (default: a new source per run)")
    ] = None,
    maildir: Annotated[
        Path | None,
        typer.Option(help="Maildir of the mail capture (default: the local stack's)"),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(help="Names the prospects sim-<run id>-<n> (default: random)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final stats as JSON")] = False,
) -> None:
    """Simulate a campaign: prospects click ads, visit, leave details and react to emails."""
    settings = load_settings()
    out = err_console if as_json else console
    with friendly_errors(ProfileError):
        chosen = load_profile(profile)
    wanted = [p.strip() for p in personas.split(",") if p.strip()] if personas else None
    unknown = sorted(set(wanted or ()) - set(chosen.personas))
    if unknown:
        err_console.print(
            f"[red]Error:[/] unknown persona(s) {', '.join(unknown)}; "
            f"the profile has {', '.join(chosen.personas)}"
        )
        raise typer.Exit(2)
    run_id = run_id or secrets.token_hex(4)
    if not RUN_ID.match(run_id):
        err_console.print("[red]Error:[/] --run-id: 1-40 characters of a-z, 0-9 and '-'")
        raise typer.Exit(2)
    url = (ingest_url or f"http://127.0.0.1:{settings.ingest_port}").rstrip("/")
    if not _reachable(url):
        err_console.print(f"[red]Error:[/] no ingest API answers at {url}: run `trayecto up` first")
        raise typer.Exit(1)
    key = write_key or _write_key(settings, run_id, out)
    box = maildir or MailCapture(settings).maildir
    if not (box / "new").is_dir():
        where = escape(str(box))
        out.print(f"[yellow]No mail capture at {where}:[/] prospects will not see emails")
        mail: Path | None = None
    else:
        mail = box
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[events]} events/s · {task.fields[emails]} emails"),
        TextColumn("· [red]{task.fields[errors]} errors"),
        TimeElapsedColumn(),
        console=out,
    )
    task = progress.add_task("prospects", total=prospects, events="0", emails=0, errors=0)

    def show(stats: Stats) -> None:
        progress.update(
            task,
            completed=stats.finished,
            events=f"{stats.events_per_s:,.0f}",
            emails=stats.emails,
            errors=sum(stats.errors.values()),
        )

    run = simulate(
        settings,
        prospects=prospects,
        rate=rate,
        seed=seed,
        personas=wanted,
        duration=duration,
        ingest_url=url,
        write_key=key,
        maildir=mail,
        profile=chosen,
        progress=show,
        run_id=run_id,
    )
    out.print(f"run [bold]{run_id}[/]: prospects sim-{run_id}-000000 … against {url}")
    with progress:
        stats = asyncio.run(run)
    if as_json:
        typer.echo(json.dumps({"run_id": run_id, **stats.to_dict()}, indent=2))
    else:
        console.print(_table(stats))
    if stats.errors.get("HTTP 401"):
        err_console.print("[yellow]Ingest refused the write key (401): check --write-key[/]")
