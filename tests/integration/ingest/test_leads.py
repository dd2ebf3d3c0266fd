"""Lead capture against the real broker and database: Google Ads, landing forms, CSV import."""

from __future__ import annotations

import asyncio
import csv
import os
import pty
import re
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from services.ingest import create_app
from services.ingest.sources import SourceAuth, add_source, revoke_source
from shared.cli.import_cmd import Lead, _publish, validate_row
from shared.contract import Channel, IdentifyEvent, TouchpointEvent, TouchpointType
from shared.db import create_pool, migrate
from shared.kafka import ensure_topics
from shared.settings import Settings

from ..names import topic_name
from .conftest import TRAYECTO, Ingest, free_port, read_topic, serve


async def _source(ingest: Ingest, name: str, **options: Any) -> tuple[str, str | None]:
    conn = await asyncpg.connect(ingest.dsn)
    try:
        created = await add_source(conn, name, **options)
    finally:
        await conn.close()
    return created.write_key, created.google_key


def _lead(google_key: str | None, email: str = "Marta@Example.ES") -> dict[str, Any]:
    return {
        "lead_id": f"lead-{uuid.uuid4().hex}",
        "api_version": "1.0",
        "form_id": 401,
        "campaign_id": 12345678901,
        "google_key": google_key,
        "is_test": False,
        "gcl_id": "EAIaIQ-gclid",
        "adgroup_id": 555,
        "creative_id": 777,
        "user_column_data": [
            {"column_name": "Email", "string_value": email, "column_id": "EMAIL"},
            {"column_name": "Phone", "string_value": "+34600000001", "column_id": "PHONE_NUMBER"},
            {"column_name": "City", "string_value": "Sevilla", "column_id": "CITY"},
        ],
    }


async def test_google_ads_lead_is_published_once(ingest: Ingest) -> None:
    _, google_key = await _source(ingest, "gads", google_key=True)
    lead = _lead(google_key)
    response = await ingest.client.post("/v1/leads/google-ads/gads", json=lead)
    assert response.status_code == 200, response.text
    assert response.json() == {}
    # Google retries a webhook it considers failed: the retry must publish nothing new.
    retries = await asyncio.gather(
        *(ingest.client.post("/v1/leads/google-ads/gads", json=lead) for _ in range(3))
    )
    assert [r.status_code for r in retries] == [200] * 3
    events = await ingest.messages(3, timeout_s=5)
    assert len(events) == 2
    identify = next(e for e in events if isinstance(e, IdentifyEvent))
    assert identify.prospect_id == "marta@example.es"
    assert identify.source == "gads"
    assert identify.traits["email"] == "marta@example.es"
    assert identify.traits["phone"] == "+34600000001"
    assert identify.traits["city"] == "Sevilla"
    touchpoint = next(e for e in events if isinstance(e, TouchpointEvent))
    assert touchpoint.type is TouchpointType.LEAD_CAPTURED
    assert touchpoint.prospect_id == "marta@example.es"
    assert touchpoint.channel is Channel.PAID_SEARCH
    assert touchpoint.properties["lead_id"] == lead["lead_id"]
    assert touchpoint.campaign is not None
    assert (
        touchpoint.campaign.campaign_id,
        touchpoint.campaign.ad_group_id,
        touchpoint.campaign.creative_id,
    ) == ("12345678901", "555", "777")


async def test_google_ads_key_must_match_an_active_source(ingest: Ingest) -> None:
    _, google_key = await _source(ingest, "gads-keys", google_key=True)
    client = ingest.client
    refused = [
        await client.post("/v1/leads/google-ads/gads-keys", json=_lead("gk_wrong")),
        await client.post("/v1/leads/google-ads/gads-keys", json=_lead(None)),
        await client.post("/v1/leads/google-ads/nobody", json=_lead(google_key)),
        # A source without a Google key accepts no webhook, whatever key is sent.
        await client.post("/v1/leads/google-ads/test-source", json=_lead(ingest.write_key)),
    ]
    assert [r.status_code for r in refused] == [401] * 4
    assert refused[0].json()["error"] == "unauthorized"
    invalid = await client.post(
        "/v1/leads/google-ads/gads-keys", json={"google_key": google_key, "is_test": "maybe"}
    )
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.json()["errors"]} == {"lead_id", "is_test"}
    not_json = await client.post("/v1/leads/google-ads/gads-keys", content=b"{lead")
    assert not_json.status_code == 400
    conn = await asyncpg.connect(ingest.dsn)
    try:
        await revoke_source(conn, "gads-keys")
    finally:
        await conn.close()
    revoked = await client.post("/v1/leads/google-ads/gads-keys", json=_lead(google_key))
    assert revoked.status_code == 401
    assert await ingest.messages(1, timeout_s=2) == []


async def test_landing_form_publishes_and_redirects(ingest: Ingest) -> None:
    email = f"form-{uuid.uuid4().hex[:8]}@example.es"
    response = await ingest.client.post(
        f"/v1/forms/demo-request?key={ingest.write_key}",
        data={
            "email": email.upper(),
            "company": "Acme",
            "utm_source": "linkedin",
            "utm_medium": "paid_social",
            "utm_campaign": "q2",
            "website": "",
        },
        headers={"Referer": "https://landing.example/demo"},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/v1/forms/thanks"
    multipart = await ingest.client.post(
        f"/v1/forms/webinar?key={ingest.write_key}",
        data={"email": email, "topic": "video"},
        files={"cv": ("cv.txt", b"not kept", "text/plain")},
    )
    assert multipart.status_code == 303, multipart.text
    events = await ingest.messages(4)
    assert len(events) == 4
    assert {e.prospect_id for e in events} == {email}
    identifies = [e for e in events if isinstance(e, IdentifyEvent)]
    assert [e.traits for e in identifies] == [
        {"company": "Acme", "email": email},
        {"topic": "video", "email": email},
    ]
    demo, webinar = (e for e in events if isinstance(e, TouchpointEvent))
    assert demo.type is TouchpointType.FORM_SUBMITTED
    assert demo.properties == {"form": "demo-request", "url": "https://landing.example/demo"}
    assert demo.channel is Channel.PAID_SOCIAL
    assert demo.campaign is not None
    assert demo.campaign.name == "q2"
    assert webinar.properties == {"form": "webinar"}
    thanks = await ingest.client.get("/v1/forms/thanks")
    assert thanks.status_code == 200
    assert thanks.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in thanks.text
    assert "<h1>Thank you</h1>" in thanks.text


async def test_landing_form_redirects_to_the_configured_thanks_url(
    settings: Settings, fresh_database: str
) -> None:
    await migrate(fresh_database)
    topic = topic_name("touchpoints")
    await ensure_topics(settings, [topic], partitions=1)
    conn = await asyncpg.connect(fresh_database)
    try:
        write_key = (await add_source(conn, "brand-site")).write_key
    finally:
        await conn.close()
    thanks = "https://brand.example/gracias"
    port = free_port()
    app_settings = settings.model_copy(
        update={"database_url": fresh_database, "form_thanks_url": thanks}
    )
    server, task = await serve(create_app(app_settings, touchpoints_topic=topic), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post(
                f"/v1/forms/contact?key={write_key}", data={"email": "rosa@example.es"}
            )
    finally:
        server.should_exit = True
        await task
    assert response.status_code == 303, response.text
    assert response.headers["location"] == thanks
    assert len(await read_topic(settings, topic, 2)) == 2


async def test_landing_form_honeypot_and_errors_publish_nothing(ingest: Ingest) -> None:
    form = f"/v1/forms/contact?key={ingest.write_key}"
    bot = await ingest.client.post(form, data={"email": "bot@x.es", "website": "http://spam"})
    assert bot.status_code == 303
    assert bot.headers["location"] == "/v1/forms/thanks"
    # A bot that fills the honeypot gets the same success, even with garbage fields.
    bot2 = await ingest.client.post(form, data={"email": "nope", "website": "x"})
    assert bot2.status_code == 303
    bad_email = await ingest.client.post(form, data={"email": "ana(at)example.es"})
    assert bad_email.status_code == 422
    assert bad_email.headers["content-type"] == "application/json"
    assert [e["field"] for e in bad_email.json()["errors"]] == ["email"]
    no_key = await ingest.client.post("/v1/forms/contact", data={"email": "a@b.es"})
    wrong_key = await ingest.client.post("/v1/forms/contact?key=tk_nope", data={"email": "a@b.es"})
    assert [no_key.status_code, wrong_key.status_code] == [401, 401]
    as_json = await ingest.client.post(form, json={"email": "a@b.es"})
    assert as_json.status_code == 415
    bad_name = await ingest.client.post(f"/v1/forms/-x?key={ingest.write_key}", data={})
    assert bad_name.status_code == 422
    assert await ingest.messages(1, timeout_s=2) == []


async def test_landing_form_is_rate_limited_per_source(ingest: Ingest) -> None:
    write_key, _ = await _source(ingest, "slow-forms", rate_limit=1)
    form = f"/v1/forms/contact?key={write_key}"
    first = await ingest.client.post(form, data={"email": "one@x.es"})
    second = await ingest.client.post(form, data={"email": "two@x.es"})
    assert first.status_code == 303
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    events = await ingest.messages(2)
    assert {e.prospect_id for e in events} == {"one@x.es"}


async def test_landing_form_stitches_the_anonymous_visitor(ingest: Ingest) -> None:
    anon = f"anon-{uuid.uuid4()}"
    email = f"stitch-{uuid.uuid4().hex[:8]}@example.es"
    page = await ingest.post("/v1/page", {"anonymousId": anon, "name": "Landing"})
    assert page.status_code == 200
    submitted = await ingest.client.post(
        f"/v1/forms/newsletter?key={ingest.write_key}",
        data={"email": email},
        headers={"Cookie": f"ajs_anonymous_id=%22{anon}%22"},
    )
    assert submitted.status_code == 303, submitted.text
    later = await ingest.post("/v1/track", {"anonymousId": anon, "event": "Video Progress"})
    assert later.status_code == 200
    events = await ingest.messages(4)
    identify = next(e for e in events if isinstance(e, IdentifyEvent))
    assert (identify.prospect_id, identify.anonymous_id) == (email, anon)
    touchpoints = {e.name: e.prospect_id for e in events if isinstance(e, TouchpointEvent)}
    assert touchpoints == {"Landing": anon, "form_submitted": email, "Video Progress": email}
    conn = await asyncpg.connect(ingest.dsn)
    try:
        linked = await conn.fetchval("SELECT user_id FROM identities WHERE anonymous_id = $1", anon)
    finally:
        await conn.close()
    assert linked == email


async def _import(ingest: Ingest, *args: str) -> tuple[int, str, str]:
    return await ingest.cli("import", *args, "--topic", ingest.topic)


def _counts(output: str) -> dict[str, int]:
    found = re.findall(r"^(would import|imported|duplicates|rejected)\b[^:]*: (\d+)$", output, re.M)
    return {name: int(count) for name, count in found}


async def test_import_publishes_each_valid_row_once(ingest: Ingest, tmp_path: Path) -> None:
    await _source(ingest, "crm")
    tag = uuid.uuid4().hex[:8]
    path = tmp_path / "fair.csv"
    path.write_text(
        "email,first_name,phone,utm_source,utm_medium,utm_campaign,stand\n"
        f"ana-{tag}@example.es,Ana,+34600000001,expo,offline,fair26,B12\n"
        f"BEA-{tag}@example.es,Bea,,,,,\n"
        f"ana-{tag}@example.es,Ana,+34600000001,expo,offline,fair26,B12\n"
        "not-an-email,Carl,,,,,\n"
        f"dan-{tag}@example.es,Dan,call me,,,,\n"
        f"eve-{tag}@example.es,Eve,+34600000005,,,,\n"
    )
    code, out, err = await _import(ingest, str(path), "--source", "crm", "--rate", "1000")
    assert code == 0, err
    assert _counts(out) == {"imported": 3, "duplicates": 1, "rejected": 2}
    report = tmp_path / "fair.rejected.csv"
    assert str(report) in out
    rows = list(csv.DictReader(report.read_text().splitlines()))
    assert [(r["line"], r["field"], r["email"]) for r in rows] == [
        ("5", "email", "not-an-email"),
        ("6", "phone", f"dan-{tag}@example.es"),
    ]
    events = await ingest.messages(6)
    assert len(events) == 6
    assert {e.prospect_id for e in events} == {
        f"ana-{tag}@example.es",
        f"bea-{tag}@example.es",
        f"eve-{tag}@example.es",
    }
    leads = [e for e in events if isinstance(e, TouchpointEvent)]
    assert {e.type for e in leads} == {TouchpointType.LEAD_CAPTURED}
    ana = next(e for e in leads if e.prospect_id.startswith("ana-"))
    assert ana.campaign is not None
    assert (ana.campaign.source, ana.campaign.name) == ("expo", "fair26")
    ana_identify = next(
        e for e in events if isinstance(e, IdentifyEvent) and e.prospect_id.startswith("ana-")
    )
    assert ana_identify.traits["stand"] == "B12"

    again, out, err = await _import(ingest, str(path), "--source", "crm")
    assert again == 0, err
    assert _counts(out) == {"imported": 0, "duplicates": 4, "rejected": 2}
    assert len(await ingest.messages(7, timeout_s=3)) == 6


async def test_import_dry_run_and_refusals(ingest: Ingest, tmp_path: Path) -> None:
    await _source(ingest, "crm-dry")
    path = tmp_path / "list.csv"
    path.write_text("Email;Name\nuno@example.es;Uno\ndos@example.es;Dos\n")
    code, out, err = await _import(ingest, str(path), "--source", "crm-dry", "--dry-run")
    assert code == 0, err
    assert _counts(out) == {"would import": 2, "duplicates": 0, "rejected": 0}
    assert not (tmp_path / "list.rejected.csv").exists()
    unknown, _, err = await _import(ingest, str(path), "--source", "nobody")
    assert unknown == 1
    assert "no source named 'nobody'" in err
    conn = await asyncpg.connect(ingest.dsn)
    try:
        await revoke_source(conn, "crm-dry")
    finally:
        await conn.close()
    revoked, _, err = await _import(ingest, str(path), "--source", "crm-dry")
    assert revoked == 1
    assert "revoked" in err
    no_email = tmp_path / "no-email.csv"
    no_email.write_text("name\nAna\n")
    missing, _, err = await _import(ingest, str(no_email), "--source", "test-source")
    assert missing == 1
    assert "no 'email' column" in err
    assert await ingest.messages(1, timeout_s=2) == []


async def test_import_is_paced_to_the_rate(ingest: Ingest) -> None:
    leads = [validate_row("test-source", n, {"email": f"pace-{n}@example.es"}) for n in range(20)]
    assert all(isinstance(lead, Lead) for lead in leads)
    pool = await create_pool(ingest.settings)
    try:
        source = await SourceAuth(pool).by_write_key(ingest.write_key)
        assert source is not None
        advanced: list[tuple[float, int]] = []
        started = time.monotonic()
        counts = await _publish(
            ingest.settings,
            pool,
            source,
            [lead for lead in leads if isinstance(lead, Lead)],
            file_name="pace.csv",
            rate=10,
            topic=ingest.topic,
            advance=lambda rows: advanced.append((time.monotonic() - started, rows)),
        )
        elapsed = time.monotonic() - started
    finally:
        await pool.close()
    assert counts == (20, 0)
    # 10 rows/s: a chunk of 10 rows a second, the second one not before a second passed.
    assert [rows for _, rows in advanced] == [10, 10]
    assert advanced[1][0] >= 0.95, advanced
    assert elapsed >= 1.9, elapsed
    assert len(await ingest.messages(40)) == 40


ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07)")


async def test_import_shows_a_live_progress_bar_on_a_terminal(
    ingest: Ingest, tmp_path: Path
) -> None:
    await _source(ingest, "crm-tty")
    path = tmp_path / "tty.csv"
    path.write_text("email\n" + "".join(f"tty-{n}@example.es\n" for n in range(20)))
    env = {
        **os.environ,
        "TRAYECTO_DATABASE_URL": ingest.dsn,
        "TRAYECTO_KAFKA_BOOTSTRAP": ingest.settings.kafka_bootstrap,
        "COLUMNS": "120",
        "TERM": "xterm-256color",
    }
    for variable in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(variable, None)
    terminal, tty = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            str(TRAYECTO),
            "import",
            str(path),
            "--source",
            "crm-tty",
            "--rate",
            "10",
            "--topic",
            ingest.topic,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=tty,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(tty)

    def read_screen() -> bytes:
        screen = b""
        while True:
            try:
                data = os.read(terminal, 65536)
            except OSError:  # EIO: the process closed the terminal
                return screen
            if not data:
                return screen
            screen += data

    try:
        screen = await asyncio.wait_for(asyncio.to_thread(read_screen), 60)
        _, err = await asyncio.wait_for(process.communicate(), 10)
    finally:
        os.close(terminal)
    assert process.returncode == 0, err.decode()
    raw = screen.decode()
    assert "\x1b[?25l" in raw  # a live display: the cursor is hidden while it updates
    text = ANSI.sub("", raw)
    # The bar was drawn while the import waited for its rate, and again at the end.
    assert re.search(r"importing [━╸╺]+\s+10/20 ", text), text
    assert re.search(r"importing ━+\s+20/20 ", text), text
    assert _counts(text.replace("\r", "")) == {"imported": 20, "duplicates": 0, "rejected": 0}
