"""``trayecto up``: the whole platform in the foreground, with readable logs."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import re
import secrets
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
from rich.live import Live
from rich.table import Table
from rich.text import Text

from services.delivery.content import CatalogueError
from services.orchestrator.journey import JourneyError
from services.orchestrator.journey.store import PublishError

from .. import stack
from ..db import MigrationError, migrate
from ..settings import SERVICES, ServiceName, Settings, without_password
from ..stack.mailcapture import MailCapture
from .common import console, friendly_errors, load_settings
from .demo import Campaign, dashboard, new_write_key

ADMIN_TOKEN_PREFIX = "ta_"
"""Admin tokens ``trayecto up`` makes start so (write keys start ``tk_``)."""
_COLOURS = {"ingest": "cyan", "orchestrator": "magenta", "delivery": "yellow", "metrics": "green"}


_NOTEWORTHY = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|^Traceback|^\S*(Error|Exception)\b")


def _pump(service: str, process: subprocess.Popen[str], log: Path) -> None:
    """Every line into the service's log file; warnings and errors on the console too."""
    assert process.stdout is not None
    with log.open("a", encoding="utf-8") as out:
        for line in process.stdout:
            out.write(line)
            out.flush()
            if _NOTEWORTHY.search(line):
                text = Text(f"{service:>12} | ", style=_COLOURS[service])
                text.append(line.rstrip())
                console.print(text, highlight=False, soft_wrap=True)


def _log_dir(settings: Settings) -> Path:
    return settings.stack_dir / "logs"


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


def _admin_token(settings: Settings) -> tuple[str | None, dict[str, str]]:
    """(a token made for this run, or None when TRAYECTO_ADMIN_TOKEN is set; the
    services' environment). The services get the token through their environment."""
    if settings.admin_token is not None:
        return None, dict(os.environ)
    token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, {**os.environ, "TRAYECTO_ADMIN_TOKEN": token}


def _start_services(
    settings: Settings, env: dict[str, str]
) -> dict[ServiceName, subprocess.Popen[str]]:
    processes: dict[ServiceName, subprocess.Popen[str]] = {}
    logs = _log_dir(settings)
    logs.mkdir(parents=True, exist_ok=True)
    for service in SERVICES:
        # Own session: Ctrl-C reaches only this supervisor, which stops the services in order.
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli.main", "serve", service],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            env=env,
        )
        log = logs / f"{service}.log"
        threading.Thread(target=_pump, args=(service, process, log), daemon=True).start()
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


def _summary(settings: Settings, source: str, write_key: str, admin_token: str | None) -> Table:
    base = "http://127.0.0.1"
    ingest, metrics = f"{base}:{settings.ingest_port}", f"{base}:{settings.metrics_port}"
    table = Table(title="Trayecto is running")
    table.add_column("what")
    table.add_column("where", overflow="fold")
    table.add_row("Event API (ingest)", f"{ingest}/v1/track, /v1/batch, …  ·  docs {ingest}/docs")
    table.add_row("Write key", f"{write_key}  (source {source}, the HTTP Basic user)")
    # A token set in the environment is not echoed; one made for this run is shown once.
    shown = f"{admin_token}  (made for this run)" if admin_token else "TRAYECTO_ADMIN_TOKEN"
    table.add_row("Admin token", f"{shown}  ·  Bearer for {ingest}/v1/admin/…, /v1/prospects/…")
    table.add_row("Journey maps", f"{metrics}/map")
    table.add_row("Funnel API", f"{metrics}/v1/funnel  ·  or `trayecto funnel`")
    table.add_row("Prospects", f"{base}:{settings.orchestrator_port}/v1/prospects/{{id}}")
    table.add_row(
        "/metrics",
        "  ".join(f"{s} :{settings.service_port(s)}" for s in SERVICES),
    )
    table.add_row("Prometheus", f"{base}:{settings.prometheus_port}  (alerts: /alerts)")
    database, smtp = without_password(settings.database_url), without_password(settings.smtp_url)
    table.add_row("Kafka · PostgreSQL", f"{settings.kafka_bootstrap} · {database}")
    mail = MailCapture(settings)
    table.add_row("Mail capture", f"{smtp}  ·  messages in {mail.maildir}/new")
    table.add_row("Service logs", f"{_log_dir(settings)}/<service>.log")
    return table


REFRESH_S = 3.0
"""How often the funnel table is redrawn on a terminal (every 10th time elsewhere)."""


def _watch(
    settings: Settings,
    processes: dict[ServiceName, subprocess.Popen[str]],
    stopping: threading.Event,
    campaign: Campaign | None,
) -> str | None:
    """Until Ctrl-C or a service dies: the funnel, live on a terminal, else now and then."""

    def died() -> str | None:
        for service, process in processes.items():
            if process.poll() is not None:
                return f"{service} exited unexpectedly (code {process.returncode})"
        return None

    if console.is_terminal:
        with Live(dashboard(settings, campaign), console=console, auto_refresh=False) as live:
            while not stopping.wait(REFRESH_S):
                if (failure := died()) is not None:
                    return failure
                live.update(dashboard(settings, campaign), refresh=True)
        return None
    ticks = 0
    while not stopping.wait(REFRESH_S):
        if (failure := died()) is not None:
            return failure
        ticks += 1
        if ticks % 10 == 0:
            console.print(dashboard(settings, campaign))
    return None


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
    campaign: bool = typer.Option(
        True, "--simulate/--no-simulate", help="Feed the platform a simulated campaign"
    ),
    rate: float = typer.Option(2.0, min=0.01, max=1000, help="Simulated prospects per second"),
    seed: int = typer.Option(1, help="Seed of the simulated campaign"),
) -> None:
    """Stack, migrations, the four services and a simulated campaign, in the foreground,
    with the funnel refreshed; Ctrl-C stops everything."""
    settings = load_settings()
    with friendly_errors(stack.StackError, MigrationError, OSError):
        stack.up(settings, console)
        applied = asyncio.run(migrate(settings.database_url))
    console.print(f"[green]✓[/] migrations: {len(applied)} applied now, schema up to date")
    with friendly_errors(JourneyError, PublishError, OSError, asyncpg.PostgresError):
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
    admin_token, env = _admin_token(settings)
    processes = _start_services(settings, env)
    failed: str | None = None
    simulated: Campaign | None = None
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
            source, write_key = asyncio.run(new_write_key(settings))
            console.print(_summary(settings, source, write_key, admin_token))
            console.print("Press Ctrl-C to stop everything.")
            if campaign:
                simulated = Campaign(settings, write_key, rate, seed)
                simulated.start()
        failed = failed or _watch(settings, processes, stopping, simulated)
    finally:
        if simulated is not None:
            console.print("stopping the simulated campaign…")
            simulated.stop()
        console.print("stopping services…")
        _stop_services(processes)
        if not keep_stack:
            with friendly_errors(stack.StackError):
                stack.down(settings, console)
    if failed:
        console.print(f"[red]Error:[/] {failed}; see the log lines above.")
        raise typer.Exit(1)
    console.print("stopped cleanly.")
