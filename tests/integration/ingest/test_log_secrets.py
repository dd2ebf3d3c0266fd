"""No secret reaches the logs: ``trayecto serve ingest`` at DEBUG (access log on), with
known secrets in its settings and in the requests it is sent, then every line it wrote."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from services.ingest.sources import add_source
from shared.db import migrate
from shared.settings import Settings
from shared.tracking import LinkClaims, sign_link

from .conftest import free_port


def _secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username or 'trayecto'}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def _wait_healthy(client: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert process.returncode is None, "ingest exited during start-up"
        try:
            if (await client.get("/livez")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "ingest did not start"
        await asyncio.sleep(0.2)


async def test_secrets_never_reach_the_logs(
    settings: Settings, fresh_database: str, tmp_path: Path
) -> None:
    await migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        write_key = (await add_source(conn, "site")).write_key
    finally:
        await conn.close()
    secrets = {
        "admin token": _secret("admin"),
        "tracking key": _secret("tracking"),
        "old tracking key": _secret("tracking-old"),
        "webhook secret": _secret("webhook"),
        "database password": _secret("dbpass"),
        "smtp password": _secret("smtppass"),
    }
    wrong_admin_token = _secret("guess")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRAYECTO_")},
        "TRAYECTO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        # The local server trusts local connections: the password is carried, not checked.
        "TRAYECTO_DATABASE_URL": _with_password(fresh_database, secrets["database password"]),
        "TRAYECTO_SMTP_URL": f"smtp://mailer:{secrets['smtp password']}@127.0.0.1:1025",
        "TRAYECTO_ADMIN_TOKEN": secrets["admin token"],
        "TRAYECTO_TRACKING_KEYS": f"{secrets['tracking key']},{secrets['old tracking key']}",
        "TRAYECTO_WEBHOOK_SECRET": secrets["webhook secret"],
        "TRAYECTO_LOG_LEVEL": "DEBUG",
        "TRAYECTO_INGEST_PORT": str(port),
        "TRAYECTO_PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    # Expired: verified (so its token is a genuine credential) but publishes nothing.
    claims = LinkClaims(
        prospect_id="ana@example.com", journey="j", journey_version=1, step="s", content="c",
        expires_at=int(time.time()) - 60, kind="o",
    )  # fmt: skip
    link_token = sign_link(env["TRAYECTO_TRACKING_KEYS"], claims)
    log_file = tmp_path / "ingest.log"
    with log_file.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shared.cli.main", "serve", "ingest",
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                await _wait_healthy(client, process)
                # None of these publishes an event: the shared broker's topics stay untouched.
                admin = {"Authorization": f"Bearer {secrets['admin token']}"}
                answers = [
                    await client.post("/v1/track", json={"event": "x"}, auth=(write_key, "")),
                    await client.post("/v1/track", json={}, auth=(write_key + "x", "")),
                    await client.get(
                        "/v1/admin/sources",
                        headers={"Authorization": f"Bearer {wrong_admin_token}"},
                    ),
                    await client.get("/v1/admin/sources", headers=admin),
                    await client.get("/v1/prospects/ana@example.com/export", headers=admin),
                    await client.get(f"/t/o/{link_token}"),
                    await client.post(f"/v1/forms/demo?key={write_key}", content=b"x"),
                    await client.get("/healthz"),
                ]
            assert [a.status_code for a in answers] == [422, 401, 401, 200, 404, 410, 415, 200]
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()
    logs = log_file.read_text("utf-8", "replace")
    # The access log did record the requests, with their secrets redacted.
    assert '"GET /t/o/[redacted] HTTP/1.1" 410' in logs, logs[-3000:]
    assert "/v1/forms/demo?key=[redacted]" in logs
    assert "/v1/prospects/[redacted] HTTP/1.1" in logs
    assert "DEBUG" in logs
    leaked = {
        name: value
        for name, value in {
            **secrets,
            "write key": write_key,
            "wrong admin token": wrong_admin_token,
            "tracking link token": link_token,
            "prospect id in a path": "ana@example.com",
        }.items()
        if value in logs
    }
    assert leaked == {}, f"in the logs: {sorted(leaked)}"
