"""The orchestrator's prospects API shows a person's data: only to the admin token."""

from __future__ import annotations

import json
import uuid

import httpx

from services.orchestrator import create_app
from shared.settings import Settings

from ..ingest.conftest import free_port, serve
from .conftest import ADMIN, ADMIN_TOKEN, Start, prepare


async def test_only_the_admin_token_reads_a_prospect(start_orchestrator: Start) -> None:
    o = await start_orchestrator()
    prospect = f"p-{uuid.uuid4().hex[:8]}"
    await o.rows(
        "INSERT INTO prospect_state (prospect_id, state) VALUES ($1, $2::jsonb)",
        prospect,
        json.dumps({"prospect_id": prospect}),
    )
    path = f"/v1/prospects/{prospect}"
    async with httpx.AsyncClient(base_url=o.url) as bare:
        refused = {
            "none": await bare.get(path),
            "wrong token": await bare.get(path, headers={"Authorization": "Bearer not-it-at-all"}),
            "basic": await bare.get(path, auth=(ADMIN_TOKEN, "")),
            "token as basic user": await bare.get(
                path, headers={"Authorization": f"Basic {ADMIN_TOKEN}"}
            ),
        }
        for what, answer in refused.items():
            assert answer.status_code == 401, (what, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer"), what
            assert prospect not in answer.text, what
        allowed = await bare.get(path, headers=ADMIN)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["prospect_id"] == prospect
    assert (await o.client.get("/healthz")).status_code == 200  # ops routes stay open


async def test_without_a_configured_token_the_prospects_api_is_off(
    settings: Settings, fresh_database: str
) -> None:
    topics = await prepare(settings, fresh_database)
    app_settings = settings.model_copy(update={"database_url": fresh_database})
    port = free_port()
    server, task = await serve(create_app(app_settings, topics=topics), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            presented = await client.get("/v1/prospects/anyone", headers=ADMIN)
            bare = await client.get("/v1/prospects/anyone")
    finally:
        server.should_exit = True
        await task
    assert presented.status_code == 503, presented.text
    assert "TRAYECTO_ADMIN_TOKEN" in presented.json()["message"]
    assert bare.status_code == 401, bare.text
    assert "TRAYECTO_ADMIN_TOKEN" in bare.json()["message"]
