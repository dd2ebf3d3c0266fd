"""``trayecto tracking rotate``: the next value of TRAYECTO_TRACKING_KEYS."""

from __future__ import annotations

import secrets
import shlex
from datetime import UTC, datetime, timedelta

import typer

from ..settings import Settings
from ..tracking import keys_of
from ..tracking_keys import VARIABLE, rotated
from .common import err_console, friendly_errors, load_settings

app = typer.Typer(help="Keys of tracking links.", no_args_is_help=True)


def _public_key() -> str:
    """The development default: anyone can read it, so it gets no grace period."""
    default = Settings.model_fields["tracking_keys"].default
    value: str = default.get_secret_value()
    return value


@app.command("rotate")
def rotate(
    grace_days: int | None = typer.Option(
        None,
        "--grace-days",
        min=0,
        help="Days after today (UTC) the current signing key keeps verifying "
        "(default: TRAYECTO_TRACKING_TTL_DAYS)",
    ),
) -> None:
    """Print a new signing key and the TRAYECTO_TRACKING_KEYS value rotating to it.

    Changes nothing: it reads the current value from the environment and prints
    the next one; set it for ingest and delivery, then restart them.

    The new key comes first. The current signing key follows with
    `until <today + grace days>`, so the links it signed keep working; other
    keys stay while their grace lasts, ended ones are dropped. The printed keys
    are secrets: keep them out of shell history and logs.
    """
    settings = load_settings()
    with friendly_errors(ValueError):
        current = keys_of(settings)
    now = datetime.now(UTC)
    days = settings.tracking_ttl_days if grace_days is None else grace_days
    last_day = now.date() + timedelta(days=days)
    new_key = secrets.token_urlsafe(32)
    public = _public_key()
    keys = rotated(current, new_key, last_day, now.timestamp(), retire={public})
    typer.echo(f"new signing key: {new_key}")
    typer.echo(f"{VARIABLE}={shlex.quote(','.join(k.entry() for k in keys))}")
    if current[0] == public:
        err_console.print("The development key was signing: it is dropped, not kept in grace.")
    else:
        err_console.print(
            f"The previous signing key verifies through {last_day.isoformat()} (UTC)."
        )
    err_console.print(
        f"Nothing was changed: set {VARIABLE} to this value for ingest and delivery "
        "and restart them, ingest first."
    )
