"""A local SMTP capture: a real SMTP server (aiosmtpd) that keeps every message as a file.

Run by the local stack so that deliveries have somewhere real to go: each accepted
message is written to ``<stack dir>/mail/capture/new/`` (a Maildir), where a person, a
mail client or the campaign simulator can read it. Nothing leaves the machine.
"""

from __future__ import annotations

import mailbox
import signal
import smtplib
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .component import Component
from .proc import require_free_port, start_detached, wait_until


class MailCapture(Component):
    name = "mail"

    @property
    def port(self) -> int:
        return urlsplit(self.settings.smtp_url).port or 25

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def maildir(self) -> Path:
        return self.dir / "capture"

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        require_free_port(self.port, "the local SMTP capture", "TRAYECTO_SMTP_URL")
        start_detached(
            [sys.executable, "-m", "shared.stack.mailcapture", str(self.port), str(self.maildir)],
            self.log,
            self.pid_file,
            self.dir,
        )
        wait_until(self.healthy, 30, "the local SMTP capture", self.log)

    def healthy(self) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=2) as client:
                return client.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False


class _Keep:
    def __init__(self, box: mailbox.Maildir) -> None:
        self._box = box
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self._box.add(envelope.content)
        return "250 2.0.0 kept"


def main() -> None:
    from aiosmtpd.controller import Controller

    port, folder = int(sys.argv[1]), Path(sys.argv[2])
    controller = Controller(
        _Keep(mailbox.Maildir(folder, create=True)), hostname="127.0.0.1", port=port
    )
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
