"""The four services as OS processes that can be killed with SIGKILL and started again.

Each service keeps its port across restarts, so clients reconnect to the same address;
its output goes to a log file next to the test's other files (appended by every start).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..faults import ServiceProcess
from ..ingest.conftest import free_port

START_TIMEOUT_S = 30.0


@dataclass
class Fleet:
    services: dict[str, ServiceProcess]
    kills: Counter[str] = field(default_factory=Counter)
    killed_at: list[tuple[str, float]] = field(default_factory=list)
    """(service, monotonic time) of each SIGKILL."""

    @classmethod
    def of(cls, names: tuple[str, ...], prefix: str, env: dict[str, str], logs: Path) -> Fleet:
        """The services, not started; ingest on ``TRAYECTO_INGEST_PORT`` (the public URL)."""
        env = {**os.environ, **env}

        def port(name: str) -> int:
            return int(env["TRAYECTO_INGEST_PORT"]) if name == "ingest" else free_port()

        def service(name: str) -> ServiceProcess:
            argv = ["tests.integration.fault_campaign.server", name, "{port}", prefix]
            return ServiceProcess(name, argv, env, logs / f"{name}.log", port=port(name))

        return cls({n: service(n) for n in names})

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    async def start(self) -> None:
        for service in self.services.values():
            service.start()
        await asyncio.gather(*(s.ready(START_TIMEOUT_S) for s in self.services.values()))

    async def kill_and_restart(self, name: str) -> None:
        service = self.services[name]
        await service.kill()
        self.kills[name] += 1
        self.killed_at.append((name, time.monotonic()))
        service.start()
        await service.ready(START_TIMEOUT_S)

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.services.values()))

    def tails(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.tail()}" for s in self.services.values())
