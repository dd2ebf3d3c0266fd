"""Export and erasure of a person, after a real journey through ingest, orchestrator,
delivery and an SMTP server: everything is exported, then nothing is left but the
aggregates, which count the same, and the address stays unsubscribed."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from services import delivery, ingest, orchestrator
from services.delivery.worker import DeliveryTopics
from services.metrics.funnel import funnel
from services.metrics.map.kpis import map_numbers
from services.orchestrator.engine.turn import stable_id
from services.orchestrator.journey import load_journey
from services.orchestrator.journey.store import publish
from services.orchestrator.topics import OrchestratorTopics
from shared import outbox
from shared.contract import Channel, ContentType, DeliveryCommand
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.kafka.producer import Producer
from shared.settings import Settings

from ..delivery.smtp_server import SmtpServer
from ..names import topic_prefix
from .conftest import free_port, serve

TOKEN = "test-admin-" + uuid.uuid4().hex
JOURNEY = """
journey: privacy-welcome
title: Welcome now, the guide a day later
persona: {id: tester}
entry: {event: lead_captured}
steps:
  - id: welcome
    send: {content: it-welcome}
  - id: pause
    wait: 1d
  - id: guide
    send: {content: it-welcome-guide}
  - id: done
    exit: completed
"""


@dataclass
class Platform:
    dsn: str
    settings: Settings
    topics: OrchestratorTopics
    delivery_topics: DeliveryTopics
    smtp: SmtpServer
    client: httpx.AsyncClient
    stop_workers: Callable[[], Awaitable[None]]
    start_delivery: Callable[[], Awaitable[None]]

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def until(self, query: str, *args: object, what: str, timeout_s: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not (await self.fetch(query, *args))[0][0]:
            assert asyncio.get_running_loop().time() < deadline, f"timed out: {what}"
            await asyncio.sleep(0.2)

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def platform(settings: Settings, fresh_database: str) -> AsyncIterator[Platform]:
    """Ingest, orchestrator and delivery on one database and their own topics."""
    await migrate(fresh_database)
    prefix = topic_prefix()
    topics = OrchestratorTopics.prefixed(prefix)
    delivery_topics = DeliveryTopics(outcomes=topics.outcomes, dead_letters=f"{prefix}dlq")
    await ensure_topics(settings, [*topics.all, delivery_topics.dead_letters], partitions=2)
    conn = await asyncpg.connect(fresh_database)
    try:
        await publish(conn, load_journey(JOURNEY), JOURNEY)
    finally:
        await conn.close()
    port = free_port()
    with SmtpServer() as smtp:
        app_settings = settings.model_copy(
            update={
                "database_url": fresh_database,
                "public_url": f"http://127.0.0.1:{port}",
                "smtp_url": smtp.url,
                "admin_token": SecretStr(TOKEN),
                "delivery_rate_limits": "email=1000,webhook=1000",
            }
        )
        servers: list[tuple[Any, asyncio.Task[None]]] = []
        servers.append(
            await serve(ingest.create_app(app_settings, touchpoints_topic=topics.touchpoints), port)
        )
        workers: list[tuple[Any, asyncio.Task[None]]] = []

        async def start_delivery() -> None:
            app = delivery.create_app(
                app_settings,
                commands_topic=topics.commands,
                topics=delivery_topics,
                group=f"test-delivery-{uuid.uuid4().hex[:8]}",
            )
            workers.append(await serve(app, free_port()))

        async def stop_workers() -> None:
            while workers:
                server, task = workers.pop()
                server.should_exit = True
                await task

        group = f"test-orchestrator-{uuid.uuid4().hex[:8]}"
        orchestrator_app = orchestrator.create_app(app_settings, topics=topics, group=group)
        workers.append(await serve(orchestrator_app, free_port()))
        await start_delivery()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield Platform(
                fresh_database, app_settings, topics, delivery_topics, smtp, client,
                stop_workers, start_delivery,
            )  # fmt: skip
        await stop_workers()
        for server, task in servers:
            server.should_exit = True
            await task


@dataclass(frozen=True)
class Person:
    anonymous_id: str
    user_id: str
    email: str
    first_name: str
    company: str


async def _travel(p: Platform, who: Person, write_key: str) -> None:
    """A visit, an identify, a lead: the journey sends the welcome email.

    The identify and the lead share the user id, hence a partition: the traits are
    applied before the lead enters the journey.
    """
    calls = [
        ("/v1/page", {"anonymousId": who.anonymous_id, "name": "Pricing",
                      "messageId": f"visit-{who.anonymous_id}"}),
        ("/v1/identify", {"anonymousId": who.anonymous_id, "userId": who.user_id,
                          "messageId": f"identify-{who.user_id}",
                          "traits": {"email": who.email, "first_name": who.first_name,
                                     "company": who.company}}),
        ("/v1/track", {"userId": who.user_id, "event": "lead_captured",
                       "messageId": f"lead-{who.user_id}",
                       "properties": {"note": f"{who.first_name} from {who.company}"}}),
    ]  # fmt: skip
    for path, body in calls:
        answer = await p.client.post(path, json=body, auth=(write_key, ""))
        assert answer.status_code == 200, answer.text


def _email_to(p: Platform, address: str) -> Any:
    found = [m for m in p.smtp.inbox.messages if address in str(m["To"])]
    return found[0] if found else None


async def _unsubscribe(p: Platform, who: Person) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while (message := _email_to(p, who.email)) is None:
        assert asyncio.get_running_loop().time() < deadline, "no welcome email"
        await asyncio.sleep(0.2)
    link = re.search(r"<(http[^>]+)>", str(message["List-Unsubscribe"]))
    assert link is not None
    answer = await p.client.post(link.group(1), data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200, answer.text
    await p.until(
        "SELECT count(*) FROM prospect_timeline WHERE prospect_id = $1 AND type = 'unsubscribed'",
        who.user_id,
        what="the unsubscribe to reach the orchestrator",
    )
    await p.until(
        "SELECT count(*) FROM prospect_timeline WHERE prospect_id = $1 AND kind = 'delivery'",
        who.user_id,
        what="the welcome's delivery outcome",
    )


def _person(tag: str) -> Person:
    unique = uuid.uuid4().hex[:8]
    return Person(
        anonymous_id=f"anon-{tag}-{unique}",
        user_id=f"user-{tag}-{unique}",
        email=f"{tag}.{unique}@example.com",
        first_name=f"Nombre{unique}",
        company=f"Empresa{unique}",
    )


async def _traces(p: Platform, needles: list[str]) -> dict[str, list[str]]:
    """Per table, the needles found anywhere in its rows (bytea columns as hex)."""
    tables = [
        r["table_name"]
        for r in await p.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    ]
    found: dict[str, list[str]] = {}
    conn = await asyncpg.connect(p.dsn)
    try:
        for table in tables:
            for needle in needles:
                hits = await conn.fetchval(
                    f'SELECT count(*) FROM "{table}" x WHERE strpos(lower(x::text), lower($1)) > 0'
                    " OR strpos(x::text, encode(convert_to($1, 'UTF8'), 'hex')) > 0",
                    needle,
                )
                if hits:
                    found.setdefault(table, []).append(needle)
    finally:
        await conn.close()
    return found


async def _aggregates(p: Platform) -> tuple[Any, Any]:
    conn = await asyncpg.connect(p.dsn)
    try:
        funnels = [f.model_dump() for f in await funnel(conn)]
        journey_map = await map_numbers(conn, load_journey(JOURNEY))
    finally:
        await conn.close()
    return funnels, journey_map


async def test_export_then_erasure_leaves_only_the_aggregates(platform: Platform) -> None:
    p = platform
    person, other = _person("gone"), _person("kept")
    source = await p.client.post("/v1/admin/sources", json={"name": "site"}, headers=p.admin())
    assert source.status_code == 201, source.text
    for who in (person, other):
        await _travel(p, who, source.json()["write_key"])
    await _unsubscribe(p, person)
    for who in (person, other):
        await p.until(
            "SELECT count(*) FROM timers WHERE prospect_id = $1",
            who.user_id,
            what="the wait's timer",
        )
    await p.stop_workers()  # the outbox row below must stay unpublished
    pending = DeliveryCommand(
        prospect_id=person.user_id,
        command_id=uuid.uuid4(),
        journey="privacy-welcome",
        journey_version=1,
        step="guide",
        content="it-welcome-guide",
        content_type=ContentType.EMAIL,
        channel=Channel.EMAIL,
        recipient={"prospect_id": person.user_id, "email": person.email},
        issued_at=datetime.now(UTC),
    )
    conn = await asyncpg.connect(p.dsn)
    try:
        async with conn.transaction():
            await outbox.add(conn, [(p.topics.commands, pending)])
    finally:
        await conn.close()

    exported = await p.client.get(f"/v1/prospects/{person.user_id}/export", headers=p.admin())
    assert exported.status_code == 200, exported.text
    data = exported.json()
    assert data["linked_ids"] == sorted([person.anonymous_id, person.user_id])
    traits = next(s for s in data["prospect_state"] if s["prospect_id"] == person.user_id)
    assert traits["state"]["traits"] == {
        "email": person.email, "first_name": person.first_name, "company": person.company,
    }  # fmt: skip
    assert [(i["anonymous_id"], i["user_id"]) for i in data["identities"]] == [
        (person.anonymous_id, person.user_id)
    ]
    assert {h["reason"] for h in data["journey_history"]} >= {"entered", "step"}
    kinds = {(t["prospect_id"], t["kind"], t["type"]) for t in data["timeline"]}
    assert (person.anonymous_id, "touchpoint", "page_view") in kinds
    assert (person.user_id, "identify", None) in kinds
    assert (person.user_id, "touchpoint", "unsubscribed") in kinds
    assert (person.user_id, "delivery", "sent") in kinds
    assert [t["step"] for t in data["timers"]] == ["pause"]
    [sent] = data["deliveries"]
    assert sent["command"]["recipient"]["email"] == person.email
    assert [(s["channel"], s["reason"]) for s in data["suppressions"]] == [
        ("email", "unsubscribed")
    ]
    unpublished = [o for o in data["outbox"] if o["published_at"] is None]
    assert [o["message"]["command_id"] for o in unpublished] == [str(pending.command_id)]
    assert {m["message_id"] for m in data["ingest_messages"]} >= {
        f"visit-{person.anonymous_id}", f"identify-{person.user_id}", f"lead-{person.user_id}"
    }  # fmt: skip
    for value in (person.email, person.first_name, person.company):
        assert value in exported.text
    assert (
        person.email
        not in (await p.client.get(f"/v1/prospects/{other.user_id}/export", headers=p.admin())).text
    )

    before = await _aggregates(p)
    assert sum(f["runs"] for f in before[0]) == 2
    needles = [
        person.anonymous_id, person.user_id, person.email, person.first_name, person.company,
        str(stable_id(person.user_id, "privacy-welcome", 1)), str(sent["command_id"]),
        *(str(h["event_id"]) for h in data["journey_history"]),
    ]  # fmt: skip
    assert set(await _traces(p, needles)) >= {
        "prospect_state", "identities", "journey_history", "prospect_timeline", "timers",
        "deliveries", "suppressions", "outbox", "ingest_messages",
    }  # fmt: skip

    # Erasing by the anonymous id erases the user it is linked to as well.
    erased = await p.client.delete(f"/v1/prospects/{person.anonymous_id}", headers=p.admin())
    assert erased.status_code == 200, erased.text
    assert erased.json()["ids"] == 2
    assert erased.json()["pseudonymised"]["journey_history"] == len(data["journey_history"])

    assert await _traces(p, needles) == {}
    assert await _aggregates(p) == before
    for erased_id in (person.user_id, person.anonymous_id):
        gone = await p.client.get(f"/v1/prospects/{erased_id}/export", headers=p.admin())
        assert gone.status_code == 404
        again = await p.client.delete(f"/v1/prospects/{erased_id}", headers=p.admin())
        assert again.status_code == 404
        assert "erasure is recorded" in again.json()["message"]
    unknown = await p.client.delete("/v1/prospects/never-seen", headers=p.admin())
    assert unknown.status_code == 404
    assert "erasure" not in unknown.json()["message"]
    assert len(await p.fetch("SELECT * FROM erasures")) == 2
    # The other prospect is untouched.
    kept = await p.client.get(f"/v1/prospects/{other.user_id}/export", headers=p.admin())
    assert kept.status_code == 200
    assert other.email in kept.text
    assert len(kept.json()["journey_history"]) > 0

    # The address is still unsubscribed, under a new id and whatever its case.
    await p.start_delivery()
    returning = pending.model_copy(
        update={
            "prospect_id": "returning-" + uuid.uuid4().hex[:6],
            "command_id": uuid.uuid4(),
            "event_id": uuid.uuid4(),
            "recipient": {"email": f" {person.email.upper()} "},
        }
    )
    emails = len(p.smtp.inbox.messages)
    producer = Producer(p.settings, client_id="test", timeout_s=10)
    await producer.start()
    try:
        await producer.send(p.topics.commands, [returning])
    finally:
        await producer.stop()
    await p.until(
        "SELECT count(*) FROM deliveries WHERE command_id = $1 AND status = 'skipped'"
        " AND reason = 'unsubscribed'",
        returning.command_id,
        what="the send to the erased address to be skipped",
    )
    assert len(p.smtp.inbox.messages) == emails


async def test_an_erasure_during_a_send_changes_nothing(platform: Platform) -> None:
    p = platform
    who = _person("busy")
    source = await p.client.post("/v1/admin/sources", json={"name": "crm"}, headers=p.admin())
    identify = {
        "anonymousId": who.anonymous_id,
        "userId": who.user_id,
        "messageId": f"identify-{who.user_id}",
        "traits": {"email": who.email},
    }
    answer = await p.client.post(
        "/v1/identify", json=identify, auth=(source.json()["write_key"], "")
    )
    assert answer.status_code == 200, answer.text
    handing_off = DeliveryCommand(
        prospect_id=who.user_id,
        command_id=uuid.uuid4(),
        journey="privacy-welcome",
        journey_version=1,
        step="welcome",
        content="it-welcome",
        content_type=ContentType.EMAIL,
        channel=Channel.EMAIL,
        recipient={"prospect_id": who.user_id, "email": who.email},
    )
    conn = await asyncpg.connect(p.dsn)
    try:
        await conn.execute(
            "INSERT INTO deliveries (command_id, prospect_id, command, channel, content, status)"
            " VALUES ($1, $2, $3, 'email', 'it-welcome', 'handing_off')",
            handing_off.command_id,
            who.user_id,
            handing_off.model_dump_json(),
        )
    finally:
        await conn.close()
    held = [
        ("identities", "SELECT count(*) FROM identities WHERE user_id = $1", who.user_id),
        ("ingest_messages", "SELECT count(*) FROM ingest_messages WHERE message_id = $1",
         f"identify-{who.user_id}"),
        ("deliveries", "SELECT count(*) FROM deliveries WHERE prospect_id = $1", who.user_id),
    ]  # fmt: skip
    before = [(await p.fetch(sql, arg))[0][0] for _, sql, arg in held]
    assert before == [1, 1, 1]

    refused = await p.client.delete(f"/v1/prospects/{who.user_id}", headers=p.admin())
    assert refused.status_code == 409, refused.text
    assert refused.headers["Retry-After"] == "5"
    # Nothing was applied, not even the messageIds deleted before the send was seen.
    assert [(await p.fetch(sql, arg))[0][0] for _, sql, arg in held] == before
    assert (await p.fetch("SELECT count(*) FROM erasures"))[0][0] == 0

    await p.fetch(
        "UPDATE deliveries SET status = 'sent' WHERE command_id = $1", handing_off.command_id
    )
    erased = await p.client.delete(f"/v1/prospects/{who.user_id}", headers=p.admin())
    assert erased.status_code == 200, erased.text
    assert [(await p.fetch(sql, arg))[0][0] for _, sql, arg in held] == [0, 0, 0]
