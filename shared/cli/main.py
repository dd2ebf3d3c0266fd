"""The ``trayecto`` command."""

from __future__ import annotations

from pathlib import Path

import typer

from . import content_cmd, db_cmd, journeys_cmd, sources_cmd, stack_cmd, tracking_cmd
from .bench_cmd import bench
from .funnel_cmd import funnel_command
from .import_cmd import import_leads
from .init_cmd import init
from .serve_cmd import serve
from .simulate_cmd import simulate_command
from .up_cmd import up

app = typer.Typer(
    name="trayecto",
    help="Trayecto: customer journeys, orchestrated and measured.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack_cmd.app, name="stack")
app.add_typer(db_cmd.app, name="db")
app.add_typer(sources_cmd.app, name="sources")
app.add_typer(content_cmd.app, name="content")
app.add_typer(journeys_cmd.app, name="journeys")
app.add_typer(tracking_cmd.app, name="tracking")
app.command()(serve)
app.command()(up)
app.command()(init)
app.command()(bench)
app.command("import")(import_leads)
app.command("funnel")(funnel_command)
app.command("simulate")(simulate_command)

docs_app = typer.Typer(help="Generated documentation.")
app.add_typer(docs_app, name="docs")


@docs_app.command("asyncapi")
def asyncapi(
    out: Path | None = typer.Option(None, help="Write to this file instead of stdout"),  # noqa: B008
) -> None:
    """The AsyncAPI document of every topic and message."""
    from ..kafka.asyncapi import asyncapi_yaml

    text = asyncapi_yaml()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
