"""A delivered PDF email's download link, followed through ingest to the file itself:
from the content store directory (ingest's /content/files) or from a URL base
(``TRAYECTO_CONTENT_BASE_URL``)."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from shared.contract import ContentType, TouchpointEvent, TouchpointType
from shared.settings import Settings

from ..ingest.conftest import Ingest, free_port, running_ingest, serve
from .conftest import Delivery, command, running_delivery
from .smtp_server import SmtpServer

pytestmark = pytest.mark.integration

DOWNLOAD = re.compile(r'href="(http://[^"]+/t/d/[A-Za-z0-9_\-.]+)"')
PDF = "it-video-summary-en.pdf"


@pytest.fixture
async def ingest(settings: Settings, fresh_database: str) -> AsyncIterator[Ingest]:
    """Ingest serving the checkout's content store directory, on the test's database."""
    async with running_ingest(settings, fresh_database) as running:
        yield running


async def _download_link(d: Delivery) -> str:
    sent = command("it-pdf-summary", ContentType.PDF, locale="en")
    await d.send(sent)

    async def received() -> bool:
        return len(d.smtp.inbox.messages) == 1

    await d.until(received, what="the PDF email")
    [message] = d.smtp.inbox.messages
    html = next(
        str(part.get_content()) for part in message.walk() if part.get_content_type() == "text/html"
    )
    links: set[str] = set(DOWNLOAD.findall(html))
    assert len(links) == 1, links
    return links.pop()


async def _follow(ingest: Ingest, link: str) -> httpx.Response:
    assert link.startswith(f"{ingest.url}/t/d/")
    response = await ingest.client.get(link, follow_redirects=True)
    assert response.status_code == 200, response.text
    assert [r.status_code for r in response.history] == [302]
    return response


async def _downloaded(ingest: Ingest) -> TouchpointEvent:
    [event] = [m for m in await ingest.messages(1) if isinstance(m, TouchpointEvent)]
    assert event.type is TouchpointType.PDF_DOWNLOADED
    return event


async def test_the_download_link_leads_to_the_pdf_in_the_content_store_directory(
    settings: Settings, fresh_database: str, smtp: SmtpServer, ingest: Ingest
) -> None:
    async with running_delivery(settings, fresh_database, smtp, public_url=ingest.url) as d:
        link = await _download_link(d)
    response = await _follow(ingest, link)
    assert str(response.url) == f"{ingest.url}/content/files/{PDF}"
    assert response.content.startswith(b"%PDF-")
    assert response.content == (settings.content_dir / "files" / PDF).read_bytes()
    event = await _downloaded(ingest)
    assert event.properties["url"] == f"{ingest.url}/content/files/{PDF}"


async def test_the_download_link_leads_to_the_pdf_under_the_content_base_url(
    settings: Settings, fresh_database: str, smtp: SmtpServer, ingest: Ingest, tmp_path: Path
) -> None:
    # A store of its own (a CDN, a bucket) holding a copy of the files, not ingest.
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(settings.content_dir / "files" / PDF, store / PDF)
    port = free_port()
    base = f"http://127.0.0.1:{port}/downloads/"
    server, task = await serve(
        Starlette(routes=[Mount("/downloads", StaticFiles(directory=store))]), port
    )
    try:
        async with running_delivery(
            settings, fresh_database, smtp, public_url=ingest.url, content_base_url=base
        ) as d:
            link = await _download_link(d)
        response = await _follow(ingest, link)
    finally:
        server.should_exit = True
        await task
    assert str(response.url) == f"{base}{PDF}"
    assert response.content.startswith(b"%PDF-")
    assert response.content == (store / PDF).read_bytes()
    event = await _downloaded(ingest)
    assert event.properties["url"] == f"{base}{PDF}"
