"""The simulator's HTTP side: Segment calls to ingest and tracked links, errors counted.

Nothing here raises on a failed request: the failure is counted by kind (the HTTP
status, or the exception's name) and the caller gets ``None``. A 503 or 429 is retried
once after its ``Retry-After`` (capped), as Segment's libraries do.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from pydantic import JsonValue

from .stats import Stats

MAX_RETRY_AFTER_S = 10.0
DEFAULT_RETRY_AFTER_S = 1.0
_OK = {200, 201, 202, 204, 302, 303}


def retry_after(response: httpx.Response) -> float:
    """Seconds the server asked to wait (a number of seconds; dates are not used)."""
    try:
        wait = float(response.headers.get("retry-after", DEFAULT_RETRY_AFTER_S))
    except ValueError:
        wait = DEFAULT_RETRY_AFTER_S
    return min(max(wait, 0.0), MAX_RETRY_AFTER_S)


class Api:
    """Ingest's event API (with the write key) and tracked links, for every prospect."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        stats: Stats,
        *,
        ingest_url: str,
        write_key: str,
        public_url: str | None = None,
    ) -> None:
        self._client = client
        self._stats = stats
        self._base = ingest_url.rstrip("/")
        self._auth = httpx.BasicAuth(write_key, "")
        self._public = public_url.rstrip("/") if public_url else None

    def local(self, url: str) -> str:
        """A tracked link aimed at the ingest under test: the public URL's origin replaced."""
        if self._public and self._public != self._base and url.startswith(self._public + "/"):
            return self._base + url[len(self._public) :]
        return url

    async def request(
        self, method: str, url: str, *, auth: bool = False, **kwargs: Any
    ) -> httpx.Response | None:
        """The response when it is a success (2xx, 302, 303); else None, counted."""
        for attempt in range(2):
            try:
                response = await self._client.request(
                    method, url, auth=self._auth if auth else None, **kwargs
                )
            except httpx.HTTPError as exc:
                self._stats.errors[type(exc).__name__] += 1
                return None
            if response.status_code in _OK:
                return response
            if response.status_code in (429, 503) and attempt == 0:
                self._stats.retries += 1
                await asyncio.sleep(retry_after(response))
                continue
            self._stats.errors[f"HTTP {response.status_code}"] += 1
            return None
        return None  # pragma: no cover - the loop always returns

    async def call(
        self, path: str, body: dict[str, JsonValue], name: str, touchpoint: str | None
    ) -> bool:
        """One Segment call (``/v1/track``, ``/v1/page``, ``/v1/identify``); counted if accepted."""
        response = await self.request("POST", f"{self._base}{path}", auth=True, json=body)
        if response is None:
            return False
        self._stats.event(name, touchpoint)
        return True

    async def follow(self, url: str, kind: str, method: str = "GET", **kwargs: Any) -> bool:
        """Follow a tracked link once (redirects are not followed); counted if it worked."""
        response = await self.request(method, self.local(url), **kwargs)
        if response is None:
            return False
        self._stats.link(kind)
        return True
