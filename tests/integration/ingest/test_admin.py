"""The admin API on a real ingest server: its credential, sources and journeys."""

from __future__ import annotations

import asyncio
import base64
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from services.ingest import create_app
from services.ingest.sources import SourceAuth, add_source
from services.orchestrator.journey.store import list_versions
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.settings import Settings

from ..names import topic_name
from .conftest import free_port, serve

TOKEN = "test-admin-" + uuid.uuid4().hex
StartIngest = Callable[[str | None], Awaitable[tuple[httpx.AsyncClient, str]]]


@pytest.fixture
async def start_ingest(settings: Settings, fresh_database: str) -> AsyncIterator[StartIngest]:
    """An ingest server with the given admin token (or none); (client, a write key)."""
    await migrate(fresh_database)
    topic = topic_name("admin")
    await ensure_topics(settings, [topic], partitions=1)
    conn = await asyncpg.connect(fresh_database)
    try:
        write_key = (await add_source(conn, "existing")).write_key
    finally:
        await conn.close()
    running: list[tuple[object, asyncio.Task[None], httpx.AsyncClient]] = []

    async def start(token: str | None) -> tuple[httpx.AsyncClient, str]:
        port = free_port()
        app_settings = settings.model_copy(
            update={"database_url": fresh_database, "admin_token": token and SecretStr(token)}
        )
        server, task = await serve(create_app(app_settings, touchpoints_topic=topic), port)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20)
        running.append((server, task, client))
        return client, write_key

    yield start
    for server, task, client in running:
        await client.aclose()
        server.should_exit = True  # type: ignore[attr-defined]
        await task


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}


ADMIN_CALLS = [
    ("GET", "/v1/admin/sources"),
    ("POST", "/v1/admin/sources"),
    ("DELETE", "/v1/admin/sources/existing"),
    ("GET", "/v1/admin/journeys"),
    ("POST", "/v1/admin/journeys"),
    ("GET", "/v1/prospects/someone/export"),
    ("DELETE", "/v1/prospects/someone"),
]


async def test_without_a_configured_token_the_admin_api_is_off(start_ingest: StartIngest) -> None:
    client, write_key = await start_ingest(None)
    for method, path in ADMIN_CALLS:
        presented = await client.request(method, path, headers=_bearer("anything-at-all-12345"))
        assert presented.status_code == 503, (path, presented.text)
        assert "TRAYECTO_ADMIN_TOKEN" in presented.json()["message"]
        bare = await client.request(method, path, auth=(write_key, ""))
        assert bare.status_code == 401, (path, bare.text)
        assert bare.headers["WWW-Authenticate"].startswith("Bearer")
        assert "TRAYECTO_ADMIN_TOKEN" in bare.json()["message"]


async def test_only_the_admin_token_opens_the_admin_api(
    start_ingest: StartIngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, write_key = await start_ingest(TOKEN)
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    refused = {
        "no credentials": {},
        "write key as bearer": _bearer(write_key),
        "write key as basic user": _basic(write_key),
        "admin token as basic user": _basic(TOKEN),
        "a prefix of the token": _bearer(TOKEN[:-1]),
        "the token and more": _bearer(TOKEN + "x"),
        "another scheme": {"Authorization": f"Token {TOKEN}"},
    }
    for method, path in ADMIN_CALLS:
        for what, headers in refused.items():
            answer = await client.request(method, path, headers=headers)
            assert answer.status_code == 401, (what, path, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer"), what
    # Every bearer guess went through the constant-time comparison, of equal-size digests.
    assert len(compared) == 3 * len(ADMIN_CALLS)
    assert {(len(a), len(b)) for a, b in compared} == {(32, 32)}
    answer = await client.get("/v1/admin/sources", headers=_bearer(TOKEN))
    assert answer.status_code == 200, answer.text
    assert real(*compared[-1])
    # An id may hold a '/': it still reaches the privacy endpoints (nothing held: 404).
    for method, path in (("GET", "/v1/prospects/a/b/export"), ("DELETE", "/v1/prospects/a/b")):
        answer = await client.request(method, path, headers=_bearer(TOKEN))
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["message"] == "nothing is held about this id"


async def test_sources_are_created_listed_and_revoked(
    start_ingest: StartIngest, fresh_database: str
) -> None:
    client, _ = await start_ingest(TOKEN)
    admin = _bearer(TOKEN)
    created = await client.post(
        "/v1/admin/sources", json={"name": "crm", "google_key": True}, headers=admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "crm"
    assert body["write_key"].startswith("tk_")
    assert body["google_key"].startswith("gk_")
    key = body["write_key"]
    event = {"userId": f"u-{uuid.uuid4().hex[:6]}", "event": "Signed Up"}
    tracked = await client.post("/v1/track", json=event, auth=(key, ""))
    assert tracked.status_code == 200, tracked.text

    again = await client.post("/v1/admin/sources", json={"name": "crm"}, headers=admin)
    assert again.status_code == 409
    bad = await client.post("/v1/admin/sources", json={"name": "Bad Name"}, headers=admin)
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["name"]
    unknown_field = await client.post(
        "/v1/admin/sources", json={"name": "x", "owner": "me"}, headers=admin
    )
    assert unknown_field.status_code == 422

    listed = await client.get("/v1/admin/sources", headers=admin)
    assert listed.status_code == 200
    assert {s["name"] for s in listed.json()} == {"existing", "crm"}
    assert key not in listed.text
    assert body["google_key"] not in listed.text
    assert all(set(s) == set(listed.json()[0]) for s in listed.json())
    assert not any("hash" in field for field in listed.json()[0])

    revoked = await client.delete("/v1/admin/sources/crm", headers=admin)
    assert revoked.status_code == 204
    assert (await client.delete("/v1/admin/sources/crm", headers=admin)).status_code == 404
    listed = await client.get("/v1/admin/sources", headers=admin)
    assert next(s for s in listed.json() if s["name"] == "crm")["revoked_at"] is not None
    # The same revocation as `trayecto sources revoke` (refused within the auth cache's 5 s).
    pool = await asyncpg.create_pool(fresh_database, min_size=1, max_size=1)
    try:
        assert await SourceAuth(pool).by_write_key(key) is None
    finally:
        await pool.close()


JOURNEY = """
# comments are kept in the published source
journey: admin-welcome
title: Welcome
persona: {id: tester}
entry: {event: lead_captured}
steps:
  - id: welcome
    send: {content: it-welcome}
  - id: done
    exit: completed
"""


async def test_journeys_are_published_as_the_cli_does(
    start_ingest: StartIngest, fresh_database: str
) -> None:
    client, _ = await start_ingest(TOKEN)
    admin = {**_bearer(TOKEN), "Content-Type": "application/yaml"}
    first = await client.post("/v1/admin/journeys", content=JOURNEY, headers=admin)
    assert first.status_code == 201, first.text
    assert first.json() == {
        "journey": "admin-welcome",
        "version": 1,
        "created": True,
        "retired": False,
    }
    same = await client.post("/v1/admin/journeys", content=JOURNEY, headers=admin)
    assert same.status_code == 200
    assert same.json()["created"] is False
    changed = JOURNEY.replace("title: Welcome", "title: Welcome again")
    as_json = await client.post(
        "/v1/admin/journeys",
        json={
            "journey": "admin-welcome",
            "title": "Welcome again",
            "persona": {"id": "tester"},
            "entry": {"event": "lead_captured"},
            "steps": [
                {"id": "welcome", "send": {"content": "it-welcome"}},
                {"id": "done", "exit": "completed"},
            ],
        },
        headers=_bearer(TOKEN),
    )
    assert as_json.status_code == 201, as_json.text
    assert as_json.json()["version"] == 2
    # The YAML of the same definition is no new version.
    same_yaml = await client.post("/v1/admin/journeys", content=changed, headers=admin)
    assert (same_yaml.status_code, same_yaml.json()["version"]) == (200, 2)

    listed = await client.get("/v1/admin/journeys", headers=_bearer(TOKEN))
    assert [(v["version"], v["live"]) for v in listed.json()] == [(1, False), (2, True)]
    conn = await asyncpg.connect(fresh_database)
    try:
        stored = await list_versions(conn, "admin-welcome")
        source = await conn.fetchval(
            "SELECT source FROM journey_versions WHERE journey = 'admin-welcome' AND version = 1"
        )
    finally:
        await conn.close()
    assert [v.version for v in stored] == [1, 2]
    assert source == JOURNEY


async def test_an_invalid_journey_lists_every_problem_and_publishes_nothing(
    start_ingest: StartIngest, fresh_database: str
) -> None:
    client, _ = await start_ingest(TOKEN)
    broken = """
journey: Not Valid
title: Broken
persona: {id: tester}
entry: {event: lead_captured}
steps:
  - id: welcome
    send: {content: it-welcome}
    colour: blue
  - id: later
    wait: soon
"""
    answer = await client.post("/v1/admin/journeys", content=broken, headers=_bearer(TOKEN))
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    fields = [e["field"] for e in errors]
    assert {"journey", "steps[0].colour", "steps[1].wait"} <= set(fields)
    assert all(isinstance(e["line"], int) for e in errors)
    not_yaml = await client.post("/v1/admin/journeys", content="a: [", headers=_bearer(TOKEN))
    assert not_yaml.status_code == 422
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM journey_versions") == 0
    finally:
        await conn.close()
