"""A second local stack of one's own: free ports and a directory next to the default one."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from shared.settings import Settings


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def private_env(*, services: bool = False) -> dict[str, str]:
    """``TRAYECTO_*`` variables of a stack on free ports (and the services', if asked)."""
    kafka, controller, pg, prom, smtp, *service_ports = free_ports(9 if services else 5)
    env = {
        "TRAYECTO_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka}",
        "TRAYECTO_KAFKA_CONTROLLER_PORT": str(controller),
        "TRAYECTO_DATABASE_URL": f"postgresql://trayecto@127.0.0.1:{pg}/trayecto",
        "TRAYECTO_PROMETHEUS_PORT": str(prom),
        "TRAYECTO_SMTP_URL": f"smtp://127.0.0.1:{smtp}",
        "TRAYECTO_STACK_DIR": str(Settings().stack_dir.parent / f"test-{uuid.uuid4().hex[:8]}"),
        "TRAYECTO_TOPIC_PARTITIONS": "2",
    }
    if services:
        ingest, orchestrator, delivery, metrics = service_ports
        env |= {
            "TRAYECTO_INGEST_PORT": str(ingest),
            "TRAYECTO_ORCHESTRATOR_PORT": str(orchestrator),
            "TRAYECTO_DELIVERY_PORT": str(delivery),
            "TRAYECTO_METRICS_PORT": str(metrics),
            "TRAYECTO_PUBLIC_URL": f"http://127.0.0.1:{ingest}",
        }
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The settings a process started with ``env`` reads (and nothing else of os.environ)."""
    fields = {name.removeprefix("TRAYECTO_").lower(): value for name, value in env.items()}
    return Settings(**fields)  # type: ignore[arg-type]


def stack_processes(stack_dir: Path) -> list[str]:
    """``pid: command line`` of every process running from the stack directory."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(stack_dir) in argv:
            found.append(f"{cmdline.parent.name}: {argv}")
    return sorted(found)
