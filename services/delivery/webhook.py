"""The webhook channel: an HMAC-signed JSON POST (SMS gateways, social schedulers, CRMs).

Receivers verify ``X-Trayecto-Signature: sha256=<hex>`` = HMAC-SHA256 of
``<X-Trayecto-Timestamp>.<body>`` with the shared ``TRAYECTO_WEBHOOK_SECRET``, and
should reject timestamps older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx

from shared.settings import Settings

from .smtp import InDoubt, PermanentFailure, TransientFailure


class Payload(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


async def post_webhook(
    settings: Settings,
    payload: Payload,
    on_handoff: Callable[[], Awaitable[None]],
    timeout_s: float = 15.0,
) -> str:
    if not settings.webhook_url:
        raise PermanentFailure("no webhook configured (TRAYECTO_WEBHOOK_URL)", bounced=False)
    body = json.dumps(payload.to_dict(), separators=(",", ":"), default=str).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Trayecto-Timestamp": timestamp,
        "X-Trayecto-Signature": signature(
            settings.webhook_secret.get_secret_value(), timestamp, body
        ),
    }
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        await on_handoff()
        try:
            response = await client.post(settings.webhook_url, content=body, headers=headers)
        except httpx.ConnectError as exc:  # nothing reached the receiver
            raise TransientFailure(f"webhook unreachable: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise InDoubt(f"webhook request interrupted: {exc!r}") from exc
    if response.status_code in {408, 425, 429} or response.status_code >= 500:
        raise TransientFailure(f"webhook answered {response.status_code}")
    if response.status_code >= 400:
        raise PermanentFailure(f"webhook answered {response.status_code}", bounced=False)
    return f"{response.status_code} {response.reason_phrase}"
