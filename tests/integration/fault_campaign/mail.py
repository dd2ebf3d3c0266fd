"""A real SMTP server (aiosmtpd) that counts every message by Message-ID and keeps a Maildir.

The counts are what "handed to SMTP once" is checked against; the Maildir is where the
simulated prospects read their emails from, so that they open and click them.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from ..ingest.conftest import free_port


class _Handler:
    def __init__(self, maildir: Path) -> None:
        self.maildir = mailbox.Maildir(maildir, create=True)
        self.by_message_id: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        with self.lock:
            self.by_message_id[str(parsed["Message-ID"])] += 1
            self.maildir.add(data)
        return "250 2.0.0 queued"


class CountingSmtp:
    """``with CountingSmtp(maildir) as smtp:`` — ``smtp.url``, ``smtp.counts()``."""

    def __init__(self, maildir: Path) -> None:
        self.port = free_port()
        self.maildir = maildir
        self._handler = _Handler(maildir)
        self._controller = Controller(self._handler, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def counts(self) -> Counter[str]:
        """Messages received per Message-ID so far."""
        with self._handler.lock:
            return Counter(self._handler.by_message_id)

    def __enter__(self) -> CountingSmtp:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()
