"""A rotated-out tracking key through a real ingest: honoured in its grace, 410 after."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import SecretStr

from services.ingest import create_app
from shared.contract import TouchpointEvent, TouchpointType
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.tracking import LinkClaims, expiry, sign_link

from ..names import topic_name
from .conftest import free_port, read_topic, serve

OLD, NEW = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"
TARGET = "https://example.com/pricing"


@asynccontextmanager
async def _ingest(settings: Settings, keys: str, topic: str) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    app_settings = settings.model_copy(
        update={
            "ingest_port": port,
            "public_url": f"http://127.0.0.1:{port}",
            # Through validation, as the environment would give it.
            "tracking_keys": Settings(tracking_keys=SecretStr(keys)).tracking_keys,
        }
    )
    server, task = await serve(create_app(app_settings, touchpoints_topic=topic), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def test_a_link_of_the_old_key_works_in_its_grace_and_is_gone_after(
    settings: Settings, fresh_database: str
) -> None:
    await migrate(fresh_database)
    topic = topic_name("touchpoints")
    await ensure_topics(settings, [topic], partitions=3)
    base = settings.model_copy(update={"database_url": fresh_database})
    today = datetime.now(UTC).date()
    claims = LinkClaims(
        prospect_id=f"p-{uuid.uuid4().hex[:12]}",
        journey="onboarding",
        journey_version=1,
        step="welcome",
        content="welcome-email",
        command_id=str(uuid.uuid4()),
        url=TARGET,
        expires_at=expiry(base, time.time()),
        kind="c",
    )
    after_rotation = claims.model_copy(
        update={"prospect_id": f"p-{uuid.uuid4().hex[:12]}", "command_id": str(uuid.uuid4())}
    )
    # Signed before the rotation, by the key that signed then.
    path = f"/t/c/{sign_link([OLD], claims)}"

    async with _ingest(base, f"{NEW},{OLD} until {today + timedelta(days=1)}", topic) as client:
        in_grace = await client.get(path)
    assert in_grace.status_code == 302, in_grace.text
    assert in_grace.headers["location"] == TARGET
    [clicked] = await read_topic(base, topic, 1)
    assert isinstance(clicked, TouchpointEvent)
    assert clicked.type is TouchpointType.EMAIL_CLICKED
    assert clicked.prospect_id == claims.prospect_id

    async with _ingest(base, f"{NEW},{OLD} until {today - timedelta(days=1)}", topic) as client:
        after_grace = await client.get(path)
        new_link = await client.get(f"/t/c/{sign_link([NEW], after_rotation)}")
    assert after_grace.status_code == 410, after_grace.text
    assert after_grace.json()["error"] == "expired"
    assert OLD not in after_grace.text
    assert NEW not in after_grace.text
    assert new_link.status_code == 302  # the new key's links work on the same server
    # The click in grace and the new key's click were recorded, the refused one not.
    events = await read_topic(base, topic, 3, timeout_s=2)
    assert sorted(e.prospect_id for e in events) == sorted(
        [claims.prospect_id, after_rotation.prospect_id]
    )
