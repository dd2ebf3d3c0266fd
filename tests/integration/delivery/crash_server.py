"""A delivery process for crash tests: kill -9 itself right after the N-th hand-off.

``python -m tests.integration.delivery.crash_server PORT PREFIX GROUP CRASH_AFTER``
(settings from the environment; CRASH_AFTER 0 = never). The kill lands after the SMTP
server accepted a message and before the delivery is recorded as sent.
"""

from __future__ import annotations

import os
import signal
import sys

import uvicorn

from services.delivery import create_app
from services.delivery.worker import DeliveryTopics
from shared.settings import Settings


def main() -> None:
    port, prefix, group, crash_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    async def after_handoff(count: int) -> None:
        if crash_after and count >= crash_after:
            os.kill(os.getpid(), signal.SIGKILL)

    app = create_app(
        Settings(),
        commands_topic=f"{prefix}delivery.commands",
        topics=DeliveryTopics(f"{prefix}delivery.outcomes", f"{prefix}delivery.dlq"),
        group=group,
        after_handoff=after_handoff,
    )
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


if __name__ == "__main__":
    main()
