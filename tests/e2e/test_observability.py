"""Every dashboard panel and alert rule, queried on the real Prometheus, returns data.

``trayecto up`` runs the four services and the stack's Prometheus (which loads the alert
rules of ``deploy/prometheus/rules``); a small campaign flows in through the public
event API; then each PromQL expression of each Grafana panel, and the measure of each
alert, is executed against Prometheus and must parse and return at least one series.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import asyncpg
import httpx
from playwright.sync_api import sync_playwright
from rich.console import Console

from services.ingest.sources import add_source
from shared import stack
from shared.promql import dashboard_expressions, measures, rule_expressions
from shared.settings import SERVICES, Settings
from shared.stack.proc import port_open

from .test_platform_up import _wait_for_line

PROSPECTS = 24
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def _noon_zone() -> str:
    """A fixed-offset zone where it is now midday: quiet hours never defer the sends."""
    offset = 12 - datetime.now(UTC).hour
    return "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def _query(prometheus: str, expr: str) -> dict[str, Any]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = json.loads(error.read())
    return body


async def _campaign(ingest: str, key: str, run: str, prospects: range) -> None:
    """Prospects arrive from an ad, look, leave their details, open, rate; some buy."""
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    zone = _noon_zone()
    async with httpx.AsyncClient(base_url=ingest, headers=auth, timeout=30) as client:

        async def track(user: str, event: str, **properties: object) -> None:
            body = {"userId": user, "event": event, "properties": properties,
                    "messageId": str(uuid.uuid4()),
                    "context": {"campaign": {"name": "smb-autumn", "source": "facebook",
                                             "medium": "paid_social"}}}  # fmt: skip
            response = await client.post("/v1/track", json=body)
            assert response.status_code == 200, response.text

        for i in prospects:
            user = f"obs-{run}-{i}"
            traits = {"email": f"{user}@example.com", "timezone": zone, "company_size": 8}
            response = await client.post("/v1/identify", json={"userId": user, "traits": traits})
            assert response.status_code == 200, response.text
            await track(user, "ad_click")
            await track(user, "page_view")
            await track(user, "lead_captured")
            await track(user, "email_opened", journey="smb-owner", step="send-pricing")
            emotion = "negative" if i % 3 == 0 else "positive"
            await track(user, "feedback", journey="smb-owner", step="send-pricing",
                        emotion=emotion)  # fmt: skip
            if i % 2 == 0:
                await track(user, "trial_started")
            if i % 4 == 0:
                await track(user, "purchase")


def _cell(text: str) -> int:
    return int(text.replace(",", "").replace("\u202f", "").strip() or 0)


def _check_live_map(
    chromium: Path, metrics: str, query: str, funnel: dict[str, dict[str, Any]]
) -> None:
    """The live map in headless Chromium shows the funnel API's numbers; a screenshot."""
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            response = page.goto(f"{metrics}/map/smb-owner?{query}")
            assert response is not None
            assert response.status == 200
            assert page.locator("svg[role=img]").count() == 1
            shown: dict[str, list[int]] = {}
            for row in page.locator("section.map table").first.locator("tbody tr").all():
                stage = row.locator("th").inner_text().strip()
                cells = [_cell(td) for td in row.locator("td").all_inner_texts()[:4]]
                shown[stage] = cells
            expected = {
                stage: [v["entered"], v["current"], v["converted"], v["dropped"]]
                for stage, v in funnel.items()
            }
            assert shown == expected
            svg_text = page.locator("svg[role=img]").text_content() or ""
            assert "Moment of" in svg_text or "felt" in svg_text  # measured emotions drawn
            page.screenshot(path=ARTIFACTS / "journey-map-smb-owner-page.png", full_page=True)
            # Wide enough for the whole map, not just the scrolled part.
            page.set_viewport_size({"width": 3700, "height": 1600})
            page.locator("svg[role=img]").screenshot(path=ARTIFACTS / "journey-map-smb-owner.png")
        finally:
            browser.close()


def _check_render_by_name() -> None:
    """`trayecto journeys render NAME` draws the published version from PostgreSQL."""
    out = ARTIFACTS / "smb-owner.svg"
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "journeys", "render", "smb-owner",
         "--out", str(out)],
        capture_output=True, text=True, timeout=60, cwd=ARTIFACTS.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ElementTree.parse(out).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_every_panel_and_alert_expression_returns_data_from_the_running_platform(
    chromium: Path,
) -> None:
    settings = Settings()
    stack.up(settings, Console(quiet=True))
    taken = [s for s in SERVICES if port_open(settings.service_port(s))]
    assert taken == [], f"ports of {taken} are in use: stop the running platform first"
    process = subprocess.Popen(
        # No simulated campaign: the counts below must be this test's own.
        [sys.executable, "-m", "shared.cli.main", "up", "--keep-stack", "--no-simulate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        start_new_session=True,
    )
    prometheus = f"http://127.0.0.1:{settings.prometheus_port}"
    try:
        _wait_for_line(process, "Press Ctrl-C", 120)
        assert process.stdout is not None
        # Keep reading the output, or the services block on a full pipe.
        drain = subprocess.Popen(["cat"], stdin=process.stdout, stdout=subprocess.DEVNULL)

        async def key() -> str:
            conn = await asyncpg.connect(settings.database_url)
            try:
                return (await add_source(conn, f"obs-{uuid.uuid4().hex[:8]}")).write_key
            finally:
                await conn.close()

        def total(expr: str) -> float:
            result = _query(prometheus, expr).get("data", {}).get("result", [])
            return float(result[0]["value"][1]) if result else 0.0

        def by_stage() -> dict[str, float]:
            expr = 'sum by (stage) (trayecto_stage_entries_total{journey="smb-owner"})'
            result = _query(prometheus, expr).get("data", {}).get("result", [])
            return {r["metric"]["stage"]: float(r["value"][1]) for r in result}

        # The published journeys' series are served at 0 before any event, so that
        # increase() counts the very first prospects: wait until Prometheus has them,
        # then for one more scrape of this instance before taking the starting values.
        deadline = time.monotonic() + 60
        while not total('count(trayecto_stage_entries_total{journey="smb-owner"})'):
            assert time.monotonic() < deadline, "journey series never reached Prometheus"
            time.sleep(1)
        time.sleep(6)
        started = datetime.now(UTC)
        entries_before = by_stage()
        touchpoints = "sum(trayecto_touchpoints_total)"
        sent = 'sum(trayecto_deliveries_total{status="sent"})'
        before = total(touchpoints), total(sent)
        run = uuid.uuid4().hex[:6]
        # A flow, not a burst: some prospects, a couple of scrapes, then the rest.
        ingest, write_key = f"http://127.0.0.1:{settings.ingest_port}", asyncio.run(key())
        asyncio.run(_campaign(ingest, write_key, run, range(PROSPECTS // 3)))
        time.sleep(11)
        asyncio.run(_campaign(ingest, write_key, run, range(PROSPECTS // 3, PROSPECTS)))

        # Wait until this campaign is visible end to end: counted, sent and scraped (the
        # stack's Prometheus may hold series of earlier runs: only growth counts).
        deadline = time.monotonic() + 180
        while total(touchpoints) < before[0] + PROSPECTS * 5 or total(sent) <= before[1]:
            assert time.monotonic() < deadline, "the campaign never showed in Prometheus"
            time.sleep(2)
        # What the campaign sent decides the funnel: every prospect enters (ad click),
        # visits (page view) and becomes a contact (lead); even ones start a trial
        # (prospect), every fourth buys (customer).
        expected = {
            "stranger": PROSPECTS, "visitor": PROSPECTS, "contact": PROSPECTS,
            "prospect": PROSPECTS // 2, "customer": PROSPECTS // 4, "promoter": 0,
        }  # fmt: skip
        moved_on = {
            "stranger": PROSPECTS, "visitor": PROSPECTS, "contact": PROSPECTS // 2,
            "prospect": PROSPECTS // 4, "customer": 0, "promoter": 0,
        }  # fmt: skip
        query = urllib.parse.urlencode({"journey": "smb-owner", "since": started.isoformat()})
        funnel_url = f"http://127.0.0.1:{settings.metrics_port}/v1/funnel?{query}"
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(funnel_url, timeout=10) as response:
                (funnel,) = json.loads(response.read())
            stages = {s["stage"]: s for s in funnel["stages"]}
            entered = {k: v["entered"] for k, v in stages.items()}
            if entered == expected or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert funnel["runs"] == PROSPECTS
        assert entered == expected
        assert {k: v["converted"] for k, v in stages.items()} == moved_on
        assert {k: v["current"] for k, v in stages.items()} == {
            k: expected[k] - moved_on[k] for k in expected
        }
        # The same numbers as counter increments in Prometheus.
        deadline = time.monotonic() + 60
        while True:
            after = by_stage()
            grown = {k: after.get(k, 0) - entries_before.get(k, 0) for k in expected}
            if grown == expected:
                break
            assert time.monotonic() < deadline, f"stage entries grew by {grown}, not {expected}"
            time.sleep(2)
        _check_live_map(chromium, f"http://127.0.0.1:{settings.metrics_port}", query, stages)
        _check_render_by_name()
        time.sleep(12)  # two more scrapes, so that rate() has points on both sides

        expressions = dashboard_expressions()
        failures = []
        checked = 0
        for e in expressions:
            checked += 1
            answer = _query(prometheus, e.expr)
            if answer.get("status") != "success":
                failures.append(f"{e.source} · {e.title}: {answer.get('error')} ← {e.expr}")
            elif not answer["data"]["result"]:
                failures.append(f"{e.source} · {e.title}: no data ← {e.expr}")
        for rule in rule_expressions():
            answer = _query(prometheus, rule.expr)
            if answer.get("status") != "success":
                failures.append(f"{rule.source} · {rule.title}: {answer.get('error')}")
            # An alert's expression is empty while it does not fire: its measures,
            # the left-hand sides of its comparisons, must return data.
            for measure in measures(rule.expr) if rule.alert else [rule.expr]:
                checked += 1
                if not _query(prometheus, measure).get("data", {}).get("result"):
                    failures.append(f"{rule.source} · {rule.title}: no data ← {measure}")
        assert checked > 30
        assert not failures, "\n".join(failures)

        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        drain.wait(timeout=10)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
