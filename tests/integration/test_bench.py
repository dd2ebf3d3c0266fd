"""`trayecto bench --json` runs against the stack and reports every documented figure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_bench_reports_the_documented_figures(settings: Settings) -> None:
    env = {
        **os.environ,
        "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TRAYECTO_DATABASE_URL": settings.database_url,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.cli.main",
            "bench",
            "ingest",
            "--seconds",
            "1",
            "--rounds",
            "1",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)["figures"]
    documented = set(
        re.findall(r"^\| `(ingest\.[a-z_.]+)` \|", (ROOT / "docs/benchmarks.md").read_text(), re.M)
    )
    assert documented == set(figures)
    for key, figure in figures.items():
        if key.endswith("failed_requests"):
            assert figure["value"] == 0, key
        else:
            assert figure["value"] > 0, key
