"""`trayecto up`: the platform starts, is scraped by the real Prometheus, and stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console

from shared import stack
from shared.cli.up_cmd import SEED_JOURNEYS
from shared.settings import SERVICES, Settings
from shared.stack.proc import port_open
from tests.private_stack import private_env, settings_of, stack_processes


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _runs(settings: Settings) -> int:
    status, body = _get(f"http://127.0.0.1:{settings.metrics_port}/v1/funnel")
    assert status == 200, body
    return sum(int(f["runs"]) for f in body)


IMPLEMENTED = {"ingest", "orchestrator", "delivery", "metrics"}


def _ctrl_c(process: subprocess.Popen[str], timeout_s: float) -> None:
    """Ctrl-C: everything stops cleanly, exit code 0."""
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, rest
    assert "stopped cleanly" in rest


def _kill(process: subprocess.Popen[str]) -> None:
    """A failed test leaves nothing behind: `trayecto up` runs in its own session."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_for_line(process: subprocess.Popen[str], marker: str, timeout_s: float) -> list[str]:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return seen
        assert time.monotonic() < deadline, "".join(seen[-30:])
    raise AssertionError(f"`trayecto up` ended before {marker!r}:\n{''.join(seen[-30:])}")


def test_up_serves_every_service_scraped_by_prometheus_and_stops_on_ctrl_c() -> None:
    settings = Settings()
    stack.up(settings, Console(quiet=True))
    taken = [s for s in SERVICES if port_open(settings.service_port(s))]
    assert taken == [], f"ports of {taken} are in use: stop the running platform first"

    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli.main", "up", "--keep-stack"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        start_new_session=True,
    )
    try:
        output = _wait_for_line(process, "Press Ctrl-C", 120)
        assert any("Trayecto is running" in line for line in output)
        for service in SERVICES:
            status, body = _get(f"http://127.0.0.1:{settings.service_port(service)}/healthz")
            assert status == 200, body
            assert body["service"] == service
            assert body["checks"] == {"kafka": "ok", "database": "ok"}
            # A service whose capability has not landed yet says so in its health.
            assert body.get("stub", False) is (service not in IMPLEMENTED)

        prometheus = f"http://127.0.0.1:{settings.prometheus_port}"
        deadline = time.monotonic() + 60
        while True:
            _, targets = _get(f"{prometheus}/api/v1/targets?state=active")
            health = {
                t["labels"]["job"]: t["health"]
                for t in targets["data"]["activeTargets"]
                if t["labels"]["job"].startswith("trayecto-")
            }
            if health == {f"trayecto-{s}": "up" for s in SERVICES}:
                break
            assert time.monotonic() < deadline, f"Prometheus targets not all up: {health}"
            time.sleep(1)

        # The simulated campaign feeds the platform: new runs enter the journeys.
        assert any("Write key" in line and "tk_" in line for line in output)
        before = _runs(settings)
        deadline = time.monotonic() + 90
        while _runs(settings) < before + 5:
            assert time.monotonic() < deadline, "the simulated campaign started no runs"
            time.sleep(2)

        _ctrl_c(process, timeout_s=60)
    finally:
        _kill(process)
    assert [s for s in SERVICES if port_open(settings.service_port(s))] == []
    # --keep-stack: the stack is still there for the next run.
    assert all(health.healthy for health in stack.status(settings))


def test_up_on_a_new_stack_stops_the_stack_too_on_ctrl_c() -> None:
    """Without --keep-stack, on a stack of its own: Ctrl-C leaves no process and no port."""
    env = private_env(services=True)
    settings = settings_of(env)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "shared.cli.main", "up", "--rate", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env, "COLUMNS": "200"},
        start_new_session=True,
    )
    try:
        output = "".join(_wait_for_line(process, "Press Ctrl-C", 180))
        ready_s = time.monotonic() - started
        assert "kafka started" in output  # a stack of its own, not the running one
        assert f"http://127.0.0.1:{settings.ingest_port}/v1/track" in output
        assert f"127.0.0.1:{settings.kafka_port}" in output
        # The seed journeys and the content catalogue are published on a new database.
        for seed in sorted(SEED_JOURNEYS.glob("*.yaml")):
            assert f"journey {seed.stem} v1 (published)" in output
        assert "content v1 (published)" in output
        assert stack_processes(settings.stack_dir) != []

        _ctrl_c(process, timeout_s=90)
    finally:
        _kill(process)
        leftover = stack_processes(settings.stack_dir)
        if leftover:
            stack.down(settings, Console(quiet=True))
        shutil.rmtree(settings.stack_dir, ignore_errors=True)
    assert leftover == []
    ports = [settings.service_port(s) for s in SERVICES] + [
        settings.kafka_port,
        settings.kafka_controller_port,
        settings.postgres_port,
        settings.prometheus_port,
    ]
    assert [port for port in ports if port_open(port)] == []
    print(f"`trayecto up` on a new stack directory was ready in {ready_s:.1f}s")
