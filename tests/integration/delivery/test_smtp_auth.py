"""SMTP AUTH from the URL's user and password: the right login sends, a wrong one fails."""

from __future__ import annotations

from collections.abc import Sequence

from services.delivery import create_app
from shared.contract import ContentType, DeliveryOutcome, DeliveryStatus
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..ingest.conftest import free_port, read_topic, serve
from .conftest import command, prepare
from .smtp_server import SmtpServer


async def _outcomes_with(settings: Settings, dsn: str, smtp_url: str) -> Sequence[object]:
    commands_topic, topics = await prepare(settings, dsn)
    app_settings = settings.model_copy(
        update={"database_url": dsn, "smtp_url": smtp_url, "delivery_max_attempts": 1}
    )
    port = free_port()
    server, task = await serve(
        create_app(app_settings, commands_topic=commands_topic, topics=topics, group=f"a-{port}"),
        port,
    )
    producer = Producer(app_settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        await producer.send(commands_topic, [command("it-welcome", ContentType.EMAIL)])
        return await read_topic(app_settings, topics.outcomes, 1)
    finally:
        await producer.stop()
        server.should_exit = True
        await task


async def test_smtp_auth_from_the_url(settings: Settings, fresh_database: str) -> None:
    with SmtpServer(login=("trayecto", "s3cr3t")) as smtp:
        good = f"smtp://trayecto:s3cr3t@127.0.0.1:{smtp.port}"
        [outcome] = [
            o
            for o in await _outcomes_with(settings, fresh_database, good)
            if isinstance(o, DeliveryOutcome)
        ]
        assert outcome.status is DeliveryStatus.SENT
        assert smtp.inbox.authenticated == [True]


async def test_a_wrong_smtp_password_is_a_failed_outcome(
    settings: Settings, fresh_database: str
) -> None:
    with SmtpServer(login=("trayecto", "s3cr3t")) as smtp:
        bad = f"smtp://trayecto:wrong@127.0.0.1:{smtp.port}"
        outcomes = [
            o
            for o in await _outcomes_with(settings, fresh_database, bad)
            if isinstance(o, DeliveryOutcome)
        ]
        assert [o.status for o in outcomes] == [DeliveryStatus.FAILED]
        assert "535" in (outcomes[0].reason or "")
        assert smtp.inbox.messages == []
