"""A delivery process for rebalance tests that kills itself with -9 when told to.

``python -m tests.integration.delivery.rebalance_server PORT PREFIX GROUP`` (settings
from the environment). SIGTERM stops it cleanly, as ``trayecto serve`` stops. After
SIGUSR1 it kills itself (SIGKILL) as its worker starts the next send: that command is
claimed (``sending``) and nothing is being handed off, so with one send in flight
(``TRAYECTO_DELIVERY_CONCURRENCY=1``) no delivery is left in doubt and every claim it
held is retried by the other instance once the lease has passed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import datetime
from types import FrameType

import uvicorn

import services.delivery.app as delivery_app
from services.delivery.content import Catalogue, RenderedMessage, RenderedPayload
from services.delivery.render import render
from services.delivery.worker import DeliveryTopics
from shared.contract import DeliveryCommand
from shared.settings import Settings

_armed = threading.Event()


def _render_or_die(
    command: DeliveryCommand, catalogue: Catalogue, settings: Settings, now: datetime
) -> RenderedMessage | RenderedPayload:
    if _armed.is_set():
        os.kill(os.getpid(), signal.SIGKILL)
    return render(command, catalogue, settings, now)


def _arm(signum: int, frame: FrameType | None) -> None:
    _armed.set()


def main() -> None:
    port, prefix, group = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    vars(delivery_app)["render"] = _render_or_die  # what the app renders each send with
    signal.signal(signal.SIGUSR1, _arm)
    app = delivery_app.create_app(
        Settings(),
        commands_topic=f"{prefix}delivery.commands",
        topics=DeliveryTopics(f"{prefix}delivery.outcomes", f"{prefix}delivery.dlq"),
        group=group,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
