"""``trayecto up``: the whole platform in the foreground, with readable logs."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

import asyncpg
import typer
from rich.table import Table

from services.delivery.content import CatalogueError
from services.orchestrator.journey import JourneyError

from .. import stack
from ..db import MigrationError, migrate
from ..settings import SERVICES, ServiceName, Settings
from ..stack.mailcapture import MailCapture
from .common import console, friendly_errors, load_settings

_COLOURS = {"ingest": "cyan", "orchestrator": "magenta", "delivery": "yellow", "metrics": "green"}


def _pump(service: str, process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        console.print(
            f"[{_COLOURS[service]}]{service:>12} |[/] {line.rstrip()}",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if this supervisor dies (even by kill -9)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _start_services(settings: Settings) -> dict[ServiceName, subprocess.Popen[str]]:
    processes: dict[ServiceName, subprocess.Popen[str]] = {}
    for service in SERVICES:
        # Own session: Ctrl-C reaches only this supervisor, which stops the services in order.
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli.main", "serve", service],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        threading.Thread(target=_pump, args=(service, process), daemon=True).start()
        processes[service] = process
    return processes


def _stop_services(processes: dict[ServiceName, subprocess.Popen[str]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for process in processes.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        if process.poll() is None:
            process.kill()
            process.wait()


def _summary(settings: Settings) -> Table:
    table = Table(title="Trayecto is running")
    table.add_column("what")
    table.add_column("where")
    for service in SERVICES:
        port = settings.service_port(service)
        table.add_row(service, f"http://127.0.0.1:{port}/healthz  ·  /metrics")
    table.add_row("Prometheus", f"http://127.0.0.1:{settings.prometheus_port}/targets")
    table.add_row("Kafka", settings.kafka_bootstrap)
    table.add_row("PostgreSQL", settings.database_url)
    mail = MailCapture(settings)
    table.add_row("Mail capture", f"{settings.smtp_url}  ·  messages in {mail.maildir}/new")
    return table


SEED_JOURNEYS = Path(__file__).resolve().parents[2] / "journeys"


async def _publish_seed_journeys(settings: Settings) -> list[tuple[str, int, bool]]:
    """The sample journeys of the checkout (a new version only when a file changed)."""
    from services.orchestrator.journey.store import publish_directory

    if not SEED_JOURNEYS.is_dir():
        return []
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await publish_directory(conn, SEED_JOURNEYS)
    finally:
        await conn.close()


async def _publish_content(settings: Settings) -> tuple[int, bool]:
    from services.delivery.content.store import publish

    conn = await asyncpg.connect(settings.database_url)
    try:
        return await publish(conn, settings.content_dir)
    finally:
        await conn.close()


def up(
    keep_stack: bool = typer.Option(
        False, help="Leave Kafka/PostgreSQL/Prometheus running on exit"
    ),
) -> None:
    """Stack + migrations + the four services, in the foreground; Ctrl-C stops everything."""
    settings = load_settings()
    with friendly_errors(stack.StackError, MigrationError, OSError):
        stack.up(settings, console)
        applied = asyncio.run(migrate(settings.database_url))
    console.print(f"[green]✓[/] migrations: {len(applied)} applied now, schema up to date")
    with friendly_errors(JourneyError, OSError, asyncpg.PostgresError):
        published = asyncio.run(_publish_seed_journeys(settings))
    for journey, version, created in published:
        state = "published" if created else "unchanged"
        console.print(f"[green]✓[/] journey {journey} v{version} ({state})")
    with friendly_errors(CatalogueError, OSError, asyncpg.PostgresError):
        content_version, created = asyncio.run(_publish_content(settings))
    state = "published" if created else "unchanged"
    console.print(f"[green]✓[/] content v{content_version} ({state})")

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    processes = _start_services(settings)
    failed: str | None = None
    try:
        pending = set(SERVICES)
        deadline = time.monotonic() + 60
        while pending and not stopping.is_set():
            for service in list(pending):
                if processes[service].poll() is not None:
                    failed = f"{service} exited during start-up (code {processes[service].poll()})"
                    stopping.set()
                    break
                if _healthy(f"http://127.0.0.1:{settings.service_port(service)}/healthz"):
                    pending.discard(service)
            if time.monotonic() > deadline:
                failed = f"not healthy after 60s: {', '.join(sorted(pending))}"
                stopping.set()
            time.sleep(0.3)
        if not stopping.is_set():
            console.print(_summary(settings))
            console.print("Press Ctrl-C to stop everything.")
        while not stopping.wait(0.5):
            for service, process in processes.items():
                if process.poll() is not None:
                    failed = f"{service} exited unexpectedly (code {process.returncode})"
                    stopping.set()
    finally:
        console.print("stopping services…")
        _stop_services(processes)
        if not keep_stack:
            with friendly_errors(stack.StackError):
                stack.down(settings, console)
    if failed:
        console.print(f"[red]Error:[/] {failed}; see the log lines above.")
        raise typer.Exit(1)
    console.print("stopped cleanly.")
