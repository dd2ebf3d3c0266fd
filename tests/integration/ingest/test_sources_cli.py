"""``trayecto sources add|list|revoke`` as a user runs it, against the real database."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid

import asyncpg
import httpx
import pytest

from services.ingest.sources import AUTH_CACHE_SECONDS
from shared.contract import TouchpointEvent

from .conftest import Ingest

pytestmark = pytest.mark.integration

WRITE_KEY = re.compile(r"\btk_[A-Za-z0-9_-]{20,}")


async def _sources(ingest: Ingest, *args: str) -> tuple[int, str, str]:
    return await ingest.cli("sources", *args)


async def _track(ingest: Ingest, key: str, message_id: str) -> httpx.Response:
    body = {"userId": "p-cli", "event": "Signed Up", "messageId": message_id}
    return await ingest.post("/v1/track", body, key=key)


async def test_a_source_added_on_the_command_line_sends_until_revoked(ingest: Ingest) -> None:
    name = f"web-{uuid.uuid4().hex[:6]}"
    code, out, err = await _sources(ingest, "add", name)
    assert code == 0, err
    [key] = WRITE_KEY.findall(out)
    quiet_code, quiet_key, err = await _sources(ingest, "add", f"{name}-q", "--quiet")
    assert quiet_code == 0, err
    quiet_key = quiet_key.strip()
    assert WRITE_KEY.fullmatch(quiet_key)
    assert quiet_key != key

    accepted = await _track(ingest, key, "m-1")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["published"] == 1
    [event] = await ingest.messages(1)
    assert isinstance(event, TouchpointEvent)
    assert (event.source, event.prospect_id, event.message_id) == (name, "p-cli", "m-1")

    # Only the key's SHA-256 is stored: the key is in no column of any source.
    conn = await asyncpg.connect(ingest.dsn)
    try:
        stored = await conn.fetchval("SELECT key_hash FROM sources WHERE name = $1", name)
        rows = await conn.fetch("SELECT s::text AS row FROM sources s")
    finally:
        await conn.close()
    assert stored == hashlib.sha256(key.encode()).digest()
    assert len(rows) >= 3  # the fixture's source and the two added here
    for secret in (key, quiet_key):
        assert not [r["row"] for r in rows if secret in r["row"] or secret[7:] in r["row"]]

    code, listed, err = await _sources(ingest, "list")
    assert code == 0, err
    line = next(row for row in listed.splitlines() if f" {name} " in row)
    assert key[:7] in line
    assert "active" in line
    assert key not in listed
    assert quiet_key not in listed

    taken, _, err = await _sources(ingest, "add", name)
    assert taken == 1
    assert "exists already" in err

    code, out, err = await _sources(ingest, "revoke", name)
    assert code == 0, err
    assert f"source {name} revoked" in out
    code, listed, err = await _sources(ingest, "list")
    assert code == 0, err
    assert "revoked" in next(row for row in listed.splitlines() if f" {name} " in row)

    # Every replica refuses a revoked key within its auth cache's lifetime.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AUTH_CACHE_SECONDS + 5
    refused = await _track(ingest, key, "m-2")
    while refused.status_code == 200 and loop.time() < deadline:
        await asyncio.sleep(0.5)
        refused = await _track(ingest, key, f"m-{uuid.uuid4().hex}")
    assert refused.status_code == 401, refused.text
    assert refused.json()["message"] == "unknown or revoked write key"
    # The other source is untouched.
    assert (await _track(ingest, quiet_key, "m-3")).status_code == 200

    again, _, err = await _sources(ingest, "revoke", name)
    assert again == 1
    assert "no active source" in err
