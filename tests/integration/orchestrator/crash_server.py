"""An orchestrator process for crash tests: kill -9 itself right after a batch commits.

``python -m tests.integration.orchestrator.crash_server PORT PREFIX GROUP CRASH_AT``
(settings from the environment; CRASH_AT 0 = never crash). The kill lands between the
database commit and the outbox relay / Kafka offset commit.
"""

from __future__ import annotations

import os
import signal
import sys

import uvicorn

from services.orchestrator import create_app
from services.orchestrator.topics import OrchestratorTopics
from shared.settings import Settings


def main() -> None:
    port, prefix, group, crash_at = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

    def after_commit(batch: int) -> None:
        if crash_at and batch >= crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    settings = Settings()
    app = create_app(
        settings,
        topics=OrchestratorTopics.prefixed(prefix),
        group=group,
        after_commit=after_commit,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
