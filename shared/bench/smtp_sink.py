"""An SMTP server for benchmarks that keeps nothing: it counts accepted DATA and bytes.

aiosmtpd in a thread of the benchmark's process (its own event loop), on a free port.
Each accepted DATA is stamped with ``time.perf_counter()`` in the server's thread, so
the rate between the first and the N-th message does not depend on how often the
benchmark looks.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True, slots=True)
class Tally:
    """What the sink accepted since its last reset."""

    messages: int
    bytes: int
    first_at: float | None
    last_at: float | None

    def rate(self) -> float:
        """Messages per second between the first and the last accepted DATA."""
        if self.first_at is None or self.last_at is None or self.messages < 2:
            return 0.0
        return (self.messages - 1) / (self.last_at - self.first_at)


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages = self._bytes = 0
        self._first_at: float | None = None
        self._last_at: float | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.perf_counter()
        size = len(envelope.original_content or envelope.content or b"")
        with self._lock:
            self._messages += 1
            self._bytes += size
            if self._first_at is None:
                self._first_at = now
            self._last_at = now
        return "250 2.0.0 accepted"

    def tally(self, *, reset: bool = False) -> Tally:
        with self._lock:
            tally = Tally(self._messages, self._bytes, self._first_at, self._last_at)
            if reset:
                self._messages = self._bytes = 0
                self._first_at = self._last_at = None
        return tally


class SmtpSink:
    """``with SmtpSink() as sink:`` — ``sink.url`` for the sender, ``sink.tally()`` to read."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._counter = _Counter()
        self._controller = Controller(
            self._counter, hostname="127.0.0.1", port=self.port, server_hostname="bench-sink"
        )

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def tally(self) -> Tally:
        return self._counter.tally()

    def reset(self) -> Tally:
        """Start counting from zero; returns what was counted before."""
        return self._counter.tally(reset=True)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()
