"""One index of the mail capture's Maildir for every prospect of a run.

A single task lists ``new/`` and ``cur/`` every ``poll_s`` seconds, reads each message
it has not seen yet (in a worker thread) and hands it to the queue of the prospect it
is addressed to; prospects never scan the folder themselves. Messages that were there
before the run started are skipped unread, and so are messages for addresses no
prospect is watching.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from .links import ReceivedEmail, parse_email

log = logging.getLogger(__name__)


class Mailbox:
    """Emails delivered to the Maildir at ``path``, by recipient address."""

    def __init__(self, path: Path, poll_s: float = 0.5) -> None:
        self.path = path
        self.poll_s = poll_s
        self._seen: set[str] = set()
        self._queues: dict[str, asyncio.Queue[ReceivedEmail]] = {}
        self.read = 0
        """Messages read and parsed so far (for any watched address)."""

    def _names(self) -> list[tuple[str, Path]]:
        found: list[tuple[str, Path]] = []
        for folder in ("new", "cur"):
            with contextlib.suppress(FileNotFoundError), os.scandir(self.path / folder) as it:
                for entry in it:
                    if not entry.name.startswith("."):
                        # cur/ names carry ":2,<flags>" after the unique part.
                        found.append((entry.name.split(":", 1)[0], Path(entry.path)))
        return found

    def skip_existing(self) -> int:
        """Mark every message already in the folder as seen; returns how many."""
        names = self._names()
        self._seen.update(key for key, _ in names)
        return len(names)

    def watch(self, address: str) -> asyncio.Queue[ReceivedEmail]:
        """The queue that receives the emails to ``address`` from now on."""
        return self._queues.setdefault(address.lower(), asyncio.Queue())

    def forget(self, address: str) -> None:
        self._queues.pop(address.lower(), None)

    def _read_new(self, watched: frozenset[str]) -> list[ReceivedEmail]:
        emails: list[ReceivedEmail] = []
        for key, path in self._names():
            if key in self._seen:
                continue
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue  # moved from new/ to cur/ meanwhile: the next scan finds it
            self._seen.add(key)
            try:
                parsed = parse_email(key, data)
            except Exception:  # a message we cannot parse must not stop the index
                log.exception("cannot parse %s", path)
                continue
            if parsed is not None and parsed.to in watched:
                emails.append(parsed)
        return emails

    async def scan(self) -> int:
        """Read the new messages and queue them for their prospects; returns how many."""
        emails = await asyncio.to_thread(self._read_new, frozenset(self._queues))
        for message in emails:
            queue = self._queues.get(message.to)
            if queue is not None:
                queue.put_nowait(message)
        self.read += len(emails)
        return len(emails)

    async def run(self) -> None:
        """Scan every ``poll_s`` until cancelled."""
        while True:
            try:
                await self.scan()
            except OSError:
                log.exception("cannot read the Maildir %s", self.path)
            await asyncio.sleep(self.poll_s)
