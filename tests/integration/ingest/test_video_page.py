"""The tracked video page in a real browser (Debian's Chromium), playing the sample video
the ingest service serves: the page's beacons become one touchpoint per milestone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Response, async_playwright

from shared.contract import Channel, TouchpointEvent, TouchpointType
from shared.tracking import LinkClaims, expiry, link_url

from .conftest import Ingest

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "artifacts"
SAMPLE = "/content/files/trayecto-intro.webm"
MILESTONES = [25, 50, 75, 100]


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium,
            args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
        )
        try:
            yield browser
        finally:
            await browser.close()


def _claims(ingest: Ingest) -> LinkClaims:
    return LinkClaims(
        prospect_id=f"p-{uuid.uuid4().hex[:12]}",
        journey="it-manager",
        journey_version=3,
        step="send-video",
        content="it-video-intro",
        command_id=str(uuid.uuid4()),
        channel=Channel.VIDEO,
        url=ingest.url + SAMPLE,
        expires_at=expiry(ingest.settings, time.time()),
    )


class Beacons:
    """The answers to the beacons (POSTs) a page sends."""

    def __init__(self, page: Page) -> None:
        self.answers: list[Response] = []
        self._more = asyncio.Event()
        page.on("response", self._seen)

    def _seen(self, response: Response) -> None:
        if response.request.method == "POST":
            self.answers.append(response)
            self._more.set()

    async def wait(self, count: int, timeout_s: float = 10.0) -> list[Response]:
        """The answers once there are ``count``, each read in full; TimeoutError before."""
        async with asyncio.timeout(timeout_s):
            while len(self.answers) < count:
                self._more.clear()
                await self._more.wait()
        for response in self.answers:
            await response.finished()
        return self.answers


async def _watch(page: Page, url: str) -> Beacons:
    """Open the page and play the video to its end; its beacons, all four answered."""
    beacons = Beacons(page)
    opened = await page.goto(url)
    assert opened is not None
    assert opened.status == 200
    await _play_to_the_end(page)
    await beacons.wait(len(MILESTONES))
    return beacons


def _percent(answer: Response) -> int:
    sent = answer.request.post_data_json
    assert isinstance(sent, dict)
    percent: int = sent["percent"]
    return percent


async def _play_to_the_end(page: Page) -> None:
    # Muted, so no user gesture is needed; at double speed, which `played` measures alike.
    # (Function bodies only: the page's CSP forbids evaluating strings.)
    await page.locator("video#video").evaluate(
        """v => new Promise((ended, failed) => {
            v.addEventListener("ended", ended, {once: true});
            v.addEventListener("error", () => failed(v.error), {once: true});
            v.muted = true;
            v.playbackRate = 2;
            v.play().catch(failed);
        })""",
        timeout=30_000,
    )


async def test_playing_the_video_records_each_milestone_once(
    ingest: Ingest, browser: Browser
) -> None:
    claims = _claims(ingest)
    url = link_url(ingest.settings, "v", claims)
    page = await browser.new_page(viewport={"width": 800, "height": 640})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    beacons = await _watch(page, url)
    first = list(beacons.answers)

    # The page is labelled and the browser really decoded the sample.
    assert await page.title() == "Your video"
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await page.get_by_role("heading", level=1).inner_text() == "Your video"
    video = page.get_by_label("Video")
    assert await video.evaluate("v => v.tagName") == "VIDEO"
    assert await video.get_attribute("controls") is not None
    assert await video.get_attribute("src") == claims.url
    facts = await video.evaluate("v => [v.videoWidth, v.videoHeight, v.duration, v.error]")
    assert facts[:2] == [640, 360]
    assert facts[2] == pytest.approx(8, abs=0.5)
    assert facts[3] is None
    await video.evaluate(
        "v => new Promise(done => { v.addEventListener('seeked', done, {once: true});"
        " v.currentTime = 3; })"
    )
    await page.screenshot(path=ARTIFACTS / "video-page.png", full_page=True)

    assert [r.status for r in first] == [200] * len(MILESTONES)
    assert [(await r.json())["published"] for r in first] == [1] * len(MILESTONES)
    assert sorted(_percent(r) for r in first) == MILESTONES

    # Seeking back and replaying on the same page sends nothing more...
    await video.evaluate("v => { v.currentTime = 0; }")
    await _play_to_the_end(page)
    with pytest.raises(TimeoutError):
        await beacons.wait(len(MILESTONES) + 1, timeout_s=1.0)
    # ...and watching again after a reload sends every milestone, each a duplicate.
    again = (await _watch(await browser.new_page(), url)).answers
    assert sorted(_percent(r) for r in again) == MILESTONES
    assert [(await r.json())["duplicates"] for r in again] == [1] * len(MILESTONES)
    assert problems == []

    events = await ingest.messages(len(MILESTONES))
    assert all(isinstance(e, TouchpointEvent) for e in events)
    touchpoints = [e for e in events if isinstance(e, TouchpointEvent)]
    assert sorted(e.properties["percent"] for e in touchpoints) == MILESTONES  # type: ignore[type-var]
    for event in touchpoints:
        assert event.type is TouchpointType.VIDEO_PROGRESS
        assert event.prospect_id == claims.prospect_id
        assert event.channel is Channel.VIDEO
        assert event.source == "tracking"
        assert event.properties["content"] == claims.content
        assert event.properties["step"] == claims.step


async def test_a_forged_link_shows_no_page_and_records_nothing(
    ingest: Ingest, browser: Browser
) -> None:
    url = link_url(ingest.settings, "v", _claims(ingest))
    token = url.rpartition("/")[2]
    forged = url.removesuffix(token) + token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    page = await browser.new_page()
    opened = await page.goto(forged)
    assert opened is not None
    assert opened.status == 403
    assert await page.locator("video").count() == 0
    status = await page.evaluate(
        """url => fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                              body: JSON.stringify({percent: 25})}).then(r => r.status)""",
        forged,
    )
    assert status == 403
    assert await ingest.messages(1, timeout_s=2) == []
