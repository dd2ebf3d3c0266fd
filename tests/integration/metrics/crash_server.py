"""A metrics service process for crash tests: kill -9 itself right after a batch commits.

``python -m tests.integration.metrics.crash_server PORT PREFIX GROUP CRASH_AT``
(settings from the environment; CRASH_AT 0 = never crash). The kill lands between the
database commit of a batch's counts and the Kafka offset commit.
"""

from __future__ import annotations

import os
import signal
import sys

import uvicorn

from services.metrics import create_app
from services.metrics.topics import MetricsTopics
from shared.settings import Settings


def main() -> None:
    port, prefix, group, crash_at = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

    def after_commit(batch: int) -> None:
        if crash_at and batch >= crash_at:
            os.kill(os.getpid(), signal.SIGKILL)

    app = create_app(
        Settings(),
        topics=MetricsTopics.prefixed(prefix),
        group=group,
        lag_groups=(group,),
        after_commit=after_commit,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
