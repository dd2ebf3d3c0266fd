"""``trayecto stack``: the local stack of real servers, as processes on this machine."""

from __future__ import annotations

import asyncio
import shlex
import time

from rich.console import Console
from rich.table import Table

from ..kafka.admin import ensure_topics
from ..settings import Settings
from .component import Component, Health
from .errors import StackError
from .kafka import Kafka
from .mailcapture import MailCapture
from .postgres import Postgres
from .prometheus import Prometheus


def components(settings: Settings) -> list[Component]:
    return [Postgres(settings), Kafka(settings), MailCapture(settings), Prometheus(settings)]


def up(settings: Settings, console: Console) -> list[Health]:
    """Start every component that is not running; idempotent. Returns their health."""
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    for component in components(settings):
        started = time.monotonic()
        with console.status(f"[bold]{component.name}[/]: preparing…"):
            component.prepare()
        if component.pid() is not None:
            with console.status(f"[bold]{component.name}[/]: already running, checking…"):
                deadline = time.monotonic() + 30
                while not component.healthy():
                    if time.monotonic() > deadline:
                        raise StackError(
                            f"{component.name} is running (pid {component.pid()}) but not "
                            f"healthy; see {component.log}. Run `trayecto stack down` and "
                            "`trayecto stack up`."
                        )
                    time.sleep(0.5)
            if isinstance(component, Prometheus):
                component.reload()
            console.print(f"[green]✓[/] {component.name} already running at {component.address}")
        else:
            with console.status(f"[bold]{component.name}[/]: starting…"):
                component.start()
            console.print(
                f"[green]✓[/] {component.name} started at {component.address} "
                f"in {time.monotonic() - started:.1f}s"
            )
        if isinstance(component, Kafka):
            created = asyncio.run(ensure_topics(settings))
            if created:
                console.print(
                    f"  created topics {', '.join(created)} "
                    f"({settings.topic_partitions} partitions each)"
                )
    return status(settings)


def down(settings: Settings, console: Console) -> None:
    # Reverse order: Prometheus and Kafka first, the database last.
    for component in reversed(components(settings)):
        pid = component.pid()
        if pid is None:
            console.print(f"  {component.name} was not running")
            continue
        with console.status(f"stopping {component.name} (pid {pid})…"):
            component.stop()
        if component.pid() is not None:
            raise StackError(f"{component.name} (pid {pid}) did not stop; kill it by hand.")
        console.print(f"[green]✓[/] {component.name} stopped")


def status(settings: Settings) -> list[Health]:
    return [component.health() for component in components(settings)]


def status_table(healths: list[Health]) -> Table:
    table = Table(title="Trayecto local stack")
    for column in ("part", "state", "address", "pid", "log"):
        table.add_column(column)
    for health in healths:
        if health.healthy:
            state = "[green]healthy[/]"
        elif health.running:
            state = "[yellow]running, not healthy[/]"
        else:
            state = "[red]stopped[/]"
        table.add_row(health.name, state, health.address, str(health.pid or "-"), str(health.log))
    return table


def env_lines(settings: Settings) -> list[str]:
    """``export`` lines that point every process at this stack."""
    values = {
        "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TRAYECTO_DATABASE_URL": settings.database_url,
        "TRAYECTO_SMTP_URL": settings.smtp_url,
        "TRAYECTO_STACK_DIR": str(settings.stack_dir),
        "TRAYECTO_PROMETHEUS_PORT": str(settings.prometheus_port),
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
