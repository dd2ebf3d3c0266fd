"""SQL and template injection through the public API: stored verbatim, read back equal,
rendered literally in the email, and inert (every table still there)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import quote

import asyncpg
import httpx

from services.delivery.content import RenderedMessage, load_catalogue
from services.delivery.render import render
from services.ingest import create_app
from services.ingest.sources import add_source
from shared.contract import DeliveryCommand

from ..bad_records import same_json
from ..ingest.conftest import free_port, serve
from .conftest import Start

WELCOME = """
journey: hostile-values
title: Hostile values
persona: {id: tester}
entry: {event: lead_captured}
steps:
  - id: hello
    send: {content: it-welcome-guide}
"""
PROSPECT = "'; DROP TABLE prospect_state; --"
TRAITS = {
    "email": "ana@example.com",
    "first_name": "{{ 7*7 }}",
    "last_name": "{% for x in range(3) %}x{% endfor %}",
    "company": "{{ ''.__class__.__mro__ }}",
    "note": "Robert'); DROP TABLE prospect_timeline;--",
    "'; DELETE FROM timers; --": '" OR 1=1 --',
    "big": 2**70,
    "max": 1e308,
    "script": "<script>alert(1)</script>",
}
EVENT = "x'); DROP TABLE journey_history; --"
TABLES = ("prospect_state", "prospect_timeline", "journey_history", "timers", "outbox")


async def test_injection_strings_are_stored_verbatim_and_rendered_literally(
    start_orchestrator: Start,
) -> None:
    o = await start_orchestrator(WELCOME)
    conn = await asyncpg.connect(o.dsn)
    try:
        key = (await add_source(conn, "hostile")).write_key
    finally:
        await conn.close()
    port = free_port()
    ingest_settings = o.settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
    server, task = await serve(
        create_app(ingest_settings, touchpoints_topic=o.topics.touchpoints), port
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=(key, "")) as api:
            calls: list[tuple[str, dict[str, object]]] = [
                ("/v1/identify", {"userId": PROSPECT, "traits": TRAITS}),
                ("/v1/track", {"userId": PROSPECT, "event": EVENT, "properties": TRAITS}),
                ("/v1/track", {"userId": PROSPECT, "event": "Lead Captured"}),
            ]
            for path, body in calls:
                answer = await api.post(path, json={**body, "messageId": str(uuid.uuid4())})
                assert answer.status_code == 200, answer.text
    finally:
        server.should_exit = True
        await task

    [command] = await o.messages(o.topics.commands, 1, timeout_s=20)
    assert isinstance(command, DeliveryCommand)
    assert command.prospect_id == PROSPECT
    answer = await o.client.get(f"/v1/prospects/{quote(PROSPECT, safe='')}")
    assert answer.status_code == 200, answer.text
    prospect = answer.json()
    assert prospect["prospect_id"] == PROSPECT
    assert same_json(prospect["traits"], TRAITS)
    [custom] = [t for t in prospect["timeline"] if t["name"] == EVENT]
    assert same_json(custom["detail"]["properties"], TRAITS)
    found = await o.rows("SELECT " + ", ".join(f"to_regclass('{t}') IS NOT NULL" for t in TABLES))
    assert list(found[0].values()) == [True] * len(TABLES)

    # The traits reach the email as data: printed as typed, never evaluated.
    settings = o.settings
    rendered = render(command, load_catalogue(settings.content_dir), settings, datetime.now(UTC))
    assert isinstance(rendered, RenderedMessage)
    assert rendered.subject.startswith("{{ 7*7 }}, ")
    assert "Hola, {{ 7*7 }}:" in rendered.text
    assert "49" not in rendered.subject
    assert "Hola, 49" not in rendered.text
    assert rendered.to.display_name == "{{ 7*7 }} {% for x in range(3) %}x{% endfor %}"
    assert "Hola, {{ 7*7 }}:" in rendered.html
