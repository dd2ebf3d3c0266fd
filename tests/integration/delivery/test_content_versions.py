"""Content is published like journeys: versions in PostgreSQL, picked up while running."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg

from services.delivery import create_app
from services.delivery.content.store import publish
from shared.contract import ContentType
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, serve
from .conftest import command, prepare
from .smtp_server import SmtpServer

OLD = "subject: Tu guía técnica de Trayecto ya está aquí"


def _retitle(root: Path, subject: str) -> None:
    catalogue = root / "catalogue.yaml"
    text = catalogue.read_text()
    assert OLD in text
    catalogue.write_text(text.replace(OLD, f"subject: {subject}", 1))


async def test_published_versions_are_rendered_and_picked_up_while_running(
    settings: Settings, fresh_database: str, smtp: SmtpServer, tmp_path: Path
) -> None:
    commands_topic, topics = await prepare(settings, fresh_database)
    content = tmp_path / "content"
    shutil.copytree(settings.content_dir, content, symlinks=True)
    conn = await asyncpg.connect(fresh_database)
    try:
        assert await publish(conn, content) == (1, True)
        assert await publish(conn, content) == (1, False)  # unchanged: no new version
        _retitle(content, "Versión dos")
        assert await publish(conn, content) == (2, True)
    finally:
        await conn.close()

    # The service's own folder is the original catalogue: it renders from version 2.
    app_settings = settings.model_copy(
        update={"database_url": fresh_database, "smtp_url": smtp.url}
    )
    port = free_port()
    server, task = await serve(
        create_app(app_settings, commands_topic=commands_topic, topics=topics, group=f"c-{port}"),
        port,
    )
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        await producer.send(commands_topic, [command("it-welcome", ContentType.EMAIL)])
        await _until(lambda: len(smtp.inbox.messages) == 1)
        assert smtp.inbox.messages[0]["Subject"] == "Versión dos"

        catalogue_file = content / "catalogue.yaml"
        catalogue_file.write_text(catalogue_file.read_text().replace("Versión dos", "Versión tres"))
        conn = await asyncpg.connect(fresh_database)
        try:
            assert await publish(conn, content) == (3, True)
        finally:
            await conn.close()
        await asyncio.sleep(6)  # the service looks for a new version every 5 s
        await producer.send(commands_topic, [command("it-welcome", ContentType.EMAIL)])
        await _until(lambda: len(smtp.inbox.messages) == 2)
        assert smtp.inbox.messages[1]["Subject"] == "Versión tres"
    finally:
        await producer.stop()
        server.should_exit = True
        await task


async def _until(check: object, timeout_s: float = 20.0) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)
