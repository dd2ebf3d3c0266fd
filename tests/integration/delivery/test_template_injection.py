"""Templates against the real delivery service: a prospect's data is printed, never run;
content that tries to leave the sandbox fails its command (naming the template) and the
service keeps sending."""

from __future__ import annotations

import copy
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.delivery import create_app
from shared.contract import ContentType, DeliveryCommand, DeliveryOutcome, DeliveryStatus
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..bad_records import read_all
from ..ingest.conftest import free_port, serve
from .conftest import Delivery, command, prepare
from .smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parents[3]
ESCAPES = {
    # content id → (where the hostile Jinja is, what it is)
    "evil-template": ("evil.html.j2", "{{ ''.__class__.__mro__[1].__subclasses__() }}"),
    "evil-globals": ("body[0]", "{{ cycler.__init__.__globals__ }}"),
    "evil-attr": ("subject", "{{ ('' | attr('__class__')).__mro__ }}"),
}
DATA = {
    "first_name": "{{ 7*7 }}",
    "last_name": "{% for x in range(3) %}x{% endfor %}",
    "company": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
}


def _hostile_catalogue(root: Path) -> None:
    shutil.copytree(ROOT / "content", root)
    path = root / "catalogue.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    welcome = next(item for item in data["items"] if item["id"] == "it-welcome")
    for content, (where, source) in ESCAPES.items():
        item: dict[str, Any] = {**copy.deepcopy(welcome), "id": content}
        for text in item["locales"].values():
            if where == "body[0]":
                text["body"][0] = source
            elif where == "subject":
                text["subject"] = source
        if where.endswith(".j2"):
            (root / "templates" / where).write_text(source)
            (root / "templates" / where.replace(".html.", ".txt.")).write_text("x")
            item["template"] = where.removesuffix(".html.j2")
        data["items"].append(item)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


@pytest.fixture
async def hostile_delivery(
    settings: Settings, fresh_database: str, smtp: SmtpServer, tmp_path: Path
) -> AsyncIterator[tuple[Delivery, httpx.AsyncClient]]:
    _hostile_catalogue(tmp_path / "content")
    commands, topics = await prepare(settings, fresh_database)
    app_settings = settings.model_copy(
        update={
            "database_url": fresh_database,
            "smtp_url": smtp.url,
            "content_dir": tmp_path / "content",
            "delivery_rate_limits": "email=1000",
        }
    )
    port = free_port()
    group = f"test-delivery-{uuid.uuid4().hex[:8]}"
    server, task = await serve(
        create_app(app_settings, commands_topic=commands, topics=topics, group=group), port
    )
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield Delivery(fresh_database, app_settings, commands, topics, producer, smtp), client
    await producer.stop()
    server.should_exit = True
    await task


def _for(content: str, prospect: str) -> DeliveryCommand:
    sent = command(content, ContentType.EMAIL, prospect=prospect)
    return sent.model_copy(update={"recipient": {**sent.recipient, **DATA}})


async def test_data_is_printed_and_sandbox_escapes_fail_their_command(
    hostile_delivery: tuple[Delivery, httpx.AsyncClient],
) -> None:
    d, client = hostile_delivery
    prospect = f"p-{uuid.uuid4().hex[:8]}"  # one prospect: one partition, in order
    escapes = [_for(content, prospect) for content in ESCAPES]
    await d.send(*escapes)

    async def all_dead() -> bool:
        rows = await d.fetch("SELECT count(*) AS n FROM deliveries WHERE status = 'dead'")
        return bool(rows[0]["n"] == len(escapes))

    await d.until(all_dead, what="every sandbox escape refused")
    # The service keeps consuming and sending after them.
    welcome = _for("it-welcome-guide", prospect)
    await d.send(welcome)

    async def sent() -> bool:
        return len(d.smtp.inbox.messages) == 1

    await d.until(sent, what="the command after the escapes sent")
    assert (await client.get("/healthz")).status_code == 200

    outcomes = [
        m
        for m in await d.messages(d.topics.outcomes, len(escapes) + 1)
        if isinstance(m, DeliveryOutcome)
    ]
    by_content = {o.content: o for o in outcomes}
    assert set(by_content) == {*ESCAPES, "it-welcome-guide"}
    for content, (where, _) in ESCAPES.items():
        failed = by_content[content]
        assert failed.status is DeliveryStatus.FAILED
        assert failed.reason is not None
        assert f"content {content!r}" in failed.reason
        assert f"in {where}" in failed.reason
        assert "SecurityError" in failed.reason
    assert by_content["it-welcome-guide"].status is DeliveryStatus.SENT
    letters = await read_all(d.settings, d.topics.dead_letters, lambda f: len(f) >= len(escapes))
    reasons = sorted(x.headers["trayecto-dlq-reason"] for x in letters)
    expected = sorted(
        f"cannot render: content {content!r}, locale 'es', in {where}: SecurityError"
        for content, (where, _) in ESCAPES.items()
    )
    assert [r[: len(e)] for r, e in zip(reasons, expected, strict=True)] == expected

    [email] = d.smtp.inbox.messages
    assert str(email["Subject"]).startswith("{{ 7*7 }}, ")
    text = str(email.get_body(("plain",)).get_content())  # type: ignore[union-attr]
    html = str(email.get_body(("html",)).get_content())  # type: ignore[union-attr]
    assert "Hola, {{ 7*7 }}:" in text
    assert "Hola, {{ 7*7 }}:" in html
    assert "Hola, 49" not in text + html
    assert "<class" not in text + html
    assert email["To"].addresses[0].display_name == "{{ 7*7 }} {% for x in range(3) %}x{% endfor %}"
