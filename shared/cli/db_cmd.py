"""``trayecto db migrate|status``."""

from __future__ import annotations

import asyncio

import asyncpg
import typer

from ..db import MigrationError, applied_migrations, load_migrations, migrate
from .common import console, friendly_errors, load_settings

app = typer.Typer(help="PostgreSQL schema migrations.")


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending migrations (safe to run twice and concurrently)."""
    settings = load_settings()
    with friendly_errors(MigrationError, OSError, asyncpg.PostgresError):
        done = asyncio.run(migrate(settings.database_url))
    if done:
        for name in done:
            console.print(f"[green]applied[/] {name}")
    else:
        console.print("database schema is up to date")


@app.command("status")
def status_cmd() -> None:
    """List applied and pending migrations."""
    settings = load_settings()
    with friendly_errors(OSError, asyncpg.PostgresError):
        applied = set(asyncio.run(applied_migrations(settings.database_url)))
    for migration in load_migrations():
        state = "[green]applied[/]" if migration.name in applied else "[yellow]pending[/]"
        console.print(f"{state} {migration.name}")
