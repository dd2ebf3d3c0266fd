"""``trayecto stack up|down|status|env``."""

from __future__ import annotations

import time

import typer

from .. import stack
from .common import console, friendly_errors, load_settings

app = typer.Typer(help="The local stack: Kafka, PostgreSQL and Prometheus as processes.")


@app.command()
def up() -> None:
    """Install what is missing, start every part, wait until healthy."""
    settings = load_settings()
    started = time.monotonic()
    with friendly_errors(stack.StackError):
        healths = stack.up(settings, console)
    console.print(stack.status_table(healths))
    console.print(f"Stack ready in {time.monotonic() - started:.1f}s. Point processes at it with:")
    console.print('  eval "$(trayecto stack env)"', markup=False)
    console.print(f"Prometheus UI: http://127.0.0.1:{settings.prometheus_port}/targets")


@app.command()
def down() -> None:
    """Stop every part; data stays in the stack directory for the next `up`."""
    settings = load_settings()
    with friendly_errors(stack.StackError):
        stack.down(settings, console)


@app.command()
def status() -> None:
    """Show each part healthy or not (exit code 1 unless all are healthy)."""
    healths = stack.status(load_settings())
    console.print(stack.status_table(healths))
    if not all(health.healthy for health in healths):
        raise typer.Exit(1)


@app.command()
def env() -> None:
    """Print `export TRAYECTO_...` lines for the running stack."""
    for line in stack.env_lines(load_settings()):
        typer.echo(line)
