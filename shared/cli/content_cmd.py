"""``trayecto content validate|list``: the delivery catalogue and what journeys use of it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import console, err_console, load_settings

app = typer.Typer(help="The content catalogue (content/).", no_args_is_help=True)
SEED_JOURNEYS = Path(__file__).resolve().parents[2] / "journeys"


@app.command("validate")
def validate(
    journeys: Annotated[
        Path, typer.Option(help="Journey files whose content ids must exist")
    ] = SEED_JOURNEYS,
) -> None:
    """Check the catalogue (items, templates, files) and that every journey's content exists."""
    from services.delivery.content import CatalogueError, load_catalogue
    from services.orchestrator.journey import JourneyError, load_journey_file
    from services.orchestrator.journey.model import SendStep

    settings = load_settings()
    try:
        catalogue = load_catalogue(settings.content_dir)
    except CatalogueError as exc:
        err_console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from exc
    missing: list[str] = []
    files = sorted(journeys.glob("*.yaml")) if journeys.is_dir() else [journeys]
    for path in files:
        try:
            journey = load_journey_file(path)
        except JourneyError as exc:
            err_console.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from exc
        for step in journey.steps:
            if isinstance(step, SendStep):
                for content in (step.send.content, *(v.content for v in step.send.variants)):
                    if content not in catalogue:
                        missing.append(f"{path.name}: step {step.id!r} sends {content!r}")
    for line in missing:
        err_console.print(f"[red]not in the catalogue[/] {line}")
    if missing:
        raise typer.Exit(1)
    console.print(
        f"catalogue ok: {len(list(catalogue))} items; every content id of "
        f"{len(files)} journey file(s) exists"
    )


@app.command("list")
def list_() -> None:
    """Every content item: type, locales and variants."""
    from services.delivery.content import load_catalogue

    catalogue = load_catalogue(load_settings().content_dir)
    table = Table("content", "type", "locales", "variants", "title")
    for item_id in sorted(catalogue.items):
        item = catalogue.items[item_id]
        table.add_row(
            item_id,
            str(item.type),
            ", ".join(sorted(item.locales)),
            ", ".join(sorted(item.variants)),
            item.title,
        )
    console.print(table)


@app.command("publish")
def publish(
    folder: Annotated[
        Path | None, typer.Argument(help="Catalogue folder (default TRAYECTO_CONTENT_DIR)")
    ] = None,
) -> None:
    """Validate the catalogue and publish it as a new version (none when unchanged)."""
    import asyncio

    import asyncpg

    from services.delivery.content import CatalogueError
    from services.delivery.content.store import publish as publish_content

    from .common import friendly_errors

    settings = load_settings()
    root = folder or settings.content_dir

    async def go() -> tuple[int, bool]:
        conn = await asyncpg.connect(settings.database_url)
        try:
            return await publish_content(conn, root)
        finally:
            await conn.close()

    with friendly_errors(CatalogueError, OSError, asyncpg.PostgresError):
        version, created = asyncio.run(go())
    state = "new" if created else "unchanged"
    console.print(f"content v{version} ({state}); delivery renders from it within 5 s")
