"""The ingest service run for a benchmark: own database and topic, own processes.

``python -m shared.bench.server PORT TOPIC WORKERS`` (other settings from the environment).
"""

from __future__ import annotations

import os
import sys

import uvicorn
from fastapi import FastAPI

from services.ingest import create_app
from shared.settings import Settings

_TOPIC_VARIABLE = "TRAYECTO_BENCH_TOPIC"


def bench_app() -> FastAPI:
    """Factory each worker process calls; the parent passes the topic in the environment."""
    return create_app(Settings(), touchpoints_topic=os.environ[_TOPIC_VARIABLE])


def main() -> None:
    port, topic, workers = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    os.environ[_TOPIC_VARIABLE] = topic
    uvicorn.run(
        "shared.bench.server:bench_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
