"""The flow's HTTP side: retry as real senders do, remember what ingest accepted.

Segment's libraries and browsers retry a request that failed to connect, was cut off or
got a 5xx, with the same body and so the same ``messageId``: ingest dedupes by it. An
event API call counts as accepted once ingest answered it 2xx; a tracked link once it
answered 2xx or a redirect.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field

import httpx

RETRY_FOR_S = 60.0
"""A request still failing after this long is given up (the event is then not accepted)."""
_FIRST_PAUSE_S = 0.2
_MAX_PAUSE_S = 2.0


@dataclass
class Ledger:
    """What the flow sent and what ingest accepted."""

    sent: set[str] = field(default_factory=set)
    """messageIds of event API calls (``/v1/...``)."""
    accepted: set[str] = field(default_factory=set)
    links_followed: int = 0
    """Tracked links followed that record an event (not the video and unsubscribe pages)."""
    links_accepted: int = 0
    retried: Counter[str] = field(default_factory=Counter)
    """Retried attempts by cause (an exception name or ``HTTP 503``...)."""
    given_up: int = 0


def message_ids(request: httpx.Request) -> list[str]:
    """The messageIds in an event API call's JSON body (one, or each call of a batch)."""
    if request.method != "POST" or not request.url.path.startswith("/v1/"):
        return []
    try:
        body = json.loads(request.content)
    except ValueError:
        return []
    calls = body.get("batch", []) if isinstance(body, dict) and "batch" in body else [body]
    return [str(c["messageId"]) for c in calls if isinstance(c, dict) and "messageId" in c]


def records_event(request: httpx.Request) -> bool:
    """Whether following this tracked link records an event (showing a page does not)."""
    path = request.url.path
    pages = request.method == "GET" and path.startswith(("/t/v/", "/t/u/"))
    return path.startswith("/t/") and not pages


class RetryingTransport(httpx.AsyncBaseTransport):
    def __init__(self, ledger: Ledger) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.ledger = ledger

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()  # the body is sent again on a retry
        ids = message_ids(request)
        link = records_event(request)
        self.ledger.sent.update(ids)
        self.ledger.links_followed += link
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_FOR_S
        pause = _FIRST_PAUSE_S
        while True:
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.TransportError as exc:
                if loop.time() > deadline:
                    self.ledger.given_up += 1
                    raise
                self.ledger.retried[type(exc).__name__] += 1
            else:
                if response.status_code < 500 or loop.time() > deadline:
                    if response.status_code < 400:
                        self.ledger.accepted.update(ids)
                        self.ledger.links_accepted += link
                    elif response.status_code >= 500:
                        self.ledger.given_up += 1
                    return response
                await response.aread()
                await response.aclose()
                self.ledger.retried[f"HTTP {response.status_code}"] += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_PAUSE_S)

    async def aclose(self) -> None:
        await self._inner.aclose()
