"""The four services as OS processes that can be killed with SIGKILL and started again.

Each service keeps its port across restarts, so clients reconnect to the same address;
its output goes to a log file next to the test's other files (appended by every start).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..ingest.conftest import free_port

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 30.0


@dataclass
class Service:
    name: str
    port: int
    prefix: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.fault_campaign.server",
                 self.name, str(self.port), self.prefix],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.starts += 1

    async def ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the process answers ``/livez`` (its lifespan, and so its consumer, started)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as client:
            while True:
                assert self.process is not None
                assert self.process.poll() is None, f"{self.name} exited:\n{self.tail()}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/livez")).status_code == 200:
                        return
                assert loop.time() < deadline, f"{self.name} did not start:\n{self.tail()}"
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL, wait for the process to be gone."""
        assert self.process is not None
        assert self.process.poll() is None, f"{self.name} is down"
        self.process.send_signal(signal.SIGKILL)
        code = await asyncio.to_thread(self.process.wait, 10)
        assert code == -signal.SIGKILL, code

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 10)

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Fleet:
    services: dict[str, Service]
    kills: Counter[str] = field(default_factory=Counter)
    killed_at: list[tuple[str, float]] = field(default_factory=list)
    """(service, monotonic time) of each SIGKILL."""

    @classmethod
    def of(cls, names: tuple[str, ...], prefix: str, env: dict[str, str], logs: Path) -> Fleet:
        """The services, not started; ingest on ``TRAYECTO_INGEST_PORT`` (the public URL)."""
        env = {**os.environ, **env}

        def port(name: str) -> int:
            return int(env["TRAYECTO_INGEST_PORT"]) if name == "ingest" else free_port()

        return cls({n: Service(n, port(n), prefix, env, logs / f"{n}.log") for n in names})

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    async def start(self) -> None:
        for service in self.services.values():
            service.start()
        await asyncio.gather(*(s.ready() for s in self.services.values()))

    async def kill_and_restart(self, name: str) -> None:
        service = self.services[name]
        await service.kill()
        self.kills[name] += 1
        self.killed_at.append((name, time.monotonic()))
        service.start()
        await service.ready()

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.services.values()))

    def tails(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.tail()}" for s in self.services.values())
