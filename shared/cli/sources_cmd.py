"""``trayecto sources add|list|revoke``: who may send events."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import typer
from rich.table import Table

from services.ingest.sources import SourceError, add_source, list_sources, revoke_source

from .common import console, friendly_errors, load_settings

app = typer.Typer(help="Event sources and their write keys.", no_args_is_help=True)
T = TypeVar("T")


def _run(action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    settings = load_settings()

    async def go() -> T:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await action(conn)
        finally:
            await conn.close()

    with friendly_errors(SourceError, OSError, asyncpg.PostgresError):
        return asyncio.run(go())


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Source name: a-z, 0-9, '.', '_', '-'"),
    rate_limit: float | None = typer.Option(
        None, help="Events/s (default TRAYECTO_INGEST_RATE_LIMIT)"
    ),
    google_key: bool = typer.Option(False, help="Also create a Google Ads lead form webhook key"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the write key"),
) -> None:
    """Create a source and print its write key (shown once: only its hash is kept)."""
    created = _run(lambda c: add_source(c, name, rate_limit=rate_limit, google_key=google_key))
    if quiet:
        typer.echo(created.write_key)
        return
    console.print(f"source [bold]{created.name}[/] created")
    console.print(
        f"write key: [bold green]{created.write_key}[/]  (HTTP Basic user; shown once)",
        soft_wrap=True,
    )
    if created.google_key:
        console.print(
            f"Google Ads webhook key: [bold green]{created.google_key}[/]", soft_wrap=True
        )
        console.print(f"webhook URL: <public url>/v1/leads/google-ads/{created.name}")


@app.command("list")
def list_() -> None:
    """Every source, its key hint and whether it is revoked."""
    sources = _run(list_sources)
    table = Table("name", "key", "google ads", "rate limit", "created", "status")
    for s in sources:
        table.add_row(
            s.name,
            f"{s.key_hint}…",
            "yes" if s.google_key else "",
            f"{s.rate_limit:g}/s" if s.rate_limit else "default",
            f"{s.created_at:%Y-%m-%d %H:%M}",
            f"[red]revoked {s.revoked_at:%Y-%m-%d %H:%M}[/]"
            if s.revoked_at
            else "[green]active[/]",
        )
    console.print(table)


@app.command("revoke")
def revoke(name: str = typer.Argument(..., help="Source name")) -> None:
    """Revoke a source's keys (every ingest replica refuses them within 5 s)."""
    _run(lambda c: revoke_source(c, name))
    console.print(f"source [bold]{name}[/] revoked")
