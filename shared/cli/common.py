"""What every CLI command shares: settings loading and error reporting."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console

from ..settings import Settings, shown_value

console = Console()
err_console = Console(stderr=True)


def load_settings() -> Settings:
    """Settings from the environment, or a clear error naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            err_console.print(
                f"[red]Invalid setting TRAYECTO_{field.upper()}[/]: {error['msg']} "
                f"(got {shown_value(field, error.get('input'))})"
            )
        raise typer.Exit(2) from exc


@contextmanager
def friendly_errors(*kinds: type[Exception]) -> Iterator[None]:
    """Turn the expected failures into a message and exit code 1, not a traceback."""
    try:
        yield
    except kinds as exc:
        err_console.print(f"[red]Error:[/] {exc}")
        raise typer.Exit(1) from exc


Command = Callable[..., None]
