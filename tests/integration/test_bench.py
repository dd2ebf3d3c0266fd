"""`trayecto bench … --json` runs against the stack and reports every documented figure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _bench(settings: Settings, *args: str) -> dict[str, Any]:
    """The figures of ``trayecto bench ARGS --json``, run as the command line runs it."""
    env = {
        **os.environ,
        "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TRAYECTO_DATABASE_URL": settings.database_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "bench", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures: dict[str, Any] = json.loads(done.stdout)["figures"]
    return figures


def _documented(bench: str) -> set[str]:
    text = (ROOT / "docs/benchmarks.md").read_text()
    return set(re.findall(rf"^\| `({bench}\.[a-z0-9_.]+)` \|", text, re.M))


def test_bench_ingest_reports_the_documented_figures(settings: Settings) -> None:
    figures = _bench(settings, "ingest", "--seconds", "1", "--rounds", "1")
    assert _documented("ingest") == set(figures)
    for key, figure in figures.items():
        if key.endswith("failed_requests"):
            assert figure["value"] == 0, key
        else:
            assert figure["value"] > 0, key


def test_bench_orchestrator_reports_the_documented_figures(settings: Settings) -> None:
    figures = _bench(
        settings,
        "orchestrator",
        "--rounds", "1",
        "--events", "1000",
        "--timers", "1000",
        "--pending-timers", "10000",
    )  # fmt: skip
    assert _documented("orchestrator") == set(figures)
    for key, figure in figures.items():
        assert figure["value"] > 0, key


def test_bench_delivery_reports_the_documented_figures(settings: Settings) -> None:
    figures = _bench(settings, "delivery", "--rounds", "1", "--emails", "300")
    assert _documented("delivery") == set(figures)
    for key, figure in figures.items():
        assert figure["value"] > 0, key


def test_bench_e2e_reports_the_documented_figures(settings: Settings) -> None:
    figures = _bench(settings, "e2e", "--seconds", "1", "--e2e-events", "500")
    assert _documented("e2e") == set(figures)
    for key, figure in figures.items():
        assert figure["value"] > 0, key
