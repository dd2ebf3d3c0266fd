"""What ``trayecto up`` adds once the services answer: a write key, a simulated campaign
feeding the platform, and the persona-by-stage funnel, refreshed."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from datetime import UTC, datetime

import asyncpg
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..settings import Settings
from ..simulate import Stats, load_profile, simulate
from ..stack.mailcapture import MailCapture
from .simulate_cmd import new_source


async def new_write_key(settings: Settings) -> tuple[str, str]:
    """A source of its own for this run: (name, write key)."""
    name = f"up-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    return name, await new_source(settings, name)


class Campaign:
    """The simulator in a thread of its own, until :meth:`stop`."""

    def __init__(self, settings: Settings, write_key: str, rate: float, seed: int) -> None:
        self.stats: Stats | None = None
        self.failed: str | None = None
        self._settings = settings
        self._write_key = write_key
        self._rate = rate
        self._seed = seed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Stats] | None = None
        self._thread = threading.Thread(target=self._run, name="campaign", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _seen(self, stats: Stats) -> None:
        self.stats = stats

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(simulate(
                self._settings, prospects=10**9, rate=self._rate, seed=self._seed,
                personas=None, duration=None,
                ingest_url=f"http://127.0.0.1:{self._settings.ingest_port}",
                write_key=self._write_key, maildir=MailCapture(self._settings).maildir,
                profile=load_profile(), progress=self._seen,
            ))  # fmt: skip
            with contextlib.suppress(asyncio.CancelledError):
                self.stats = await self._task

        try:
            asyncio.run(main())
        except Exception as exc:  # shown in the table; the platform keeps running
            self.failed = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=15)

    def line(self) -> Text:
        if self.failed:
            return Text(f"simulated campaign stopped: {self.failed}", style="red")
        s = self.stats
        if s is None:
            return Text("simulated campaign starting…")
        errors = sum(s.errors.values())
        return Text(
            f"simulated campaign: {s.started:,} prospects at {self._rate:g}/s · "
            f"{sum(s.touchpoints.values()):,} touchpoints · {s.emails:,} emails read · "
            f"{sum(s.links.values()):,} links followed · {errors:,} errors",
            style="red" if errors else "",
        )


def dashboard(settings: Settings, campaign: Campaign | None) -> RenderableType:
    """The funnel table of every journey and persona, and the campaign's progress."""
    from .funnel_cmd import CELL, FunnelCommandError, fetch, tables

    parts: list[RenderableType] = []
    try:
        funnels = asyncio.run(fetch(settings.database_url, {}))
    except (FunnelCommandError, asyncpg.PostgresError, TimeoutError) as exc:
        parts.append(Text(f"funnel unavailable: {exc}", style="red"))
        funnels = []
    parts += tables(funnels, variants=False)
    if not funnels:
        parts.append(Text("no prospect has entered a journey yet"))
    parts.append(Text(CELL, style="dim"))
    if campaign is not None:
        parts.append(campaign.line())
    stamp = Table.grid()
    stamp.add_row(Text(f"updated {datetime.now(UTC):%H:%M:%S} UTC · Ctrl-C stops everything",
                       style="dim"))  # fmt: skip
    parts.append(stamp)
    return Group(*parts)
