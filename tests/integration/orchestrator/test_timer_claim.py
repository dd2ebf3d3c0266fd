"""The timer claim builds TimerFired outbox rows in PostgreSQL: they must be the contract's."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.orchestrator.timers import claim_due, fired_event_id
from services.orchestrator.topics import OrchestratorTopics
from shared.contract import TimerFired
from shared.db import migrate
from shared.kafka.codec import Record, decode, encode

pytestmark = pytest.mark.integration


async def test_claimed_timers_become_contract_timer_fired_records(fresh_database: str) -> None:
    await migrate(fresh_database)
    topics = OrchestratorTopics.prefixed("claim.")
    now = datetime.now(UTC)
    due = [
        (
            uuid.uuid4(),
            f'p-{i} "quoted" \\ ñ',  # JSON-escaped by the claim
            uuid.uuid4(),
            "welcome_es-2",
            2,
            f"wait.{i}",
            now - timedelta(seconds=i),
        )
        for i in range(5)
    ]
    later = (uuid.uuid4(), "p-later", uuid.uuid4(), "welcome", 2, "wait", now + timedelta(hours=1))
    payloads = {row[0]: {"reason": "timeout", "n": i, "ñ": "ü"} for i, row in enumerate(due)}
    conn = await asyncpg.connect(fresh_database)
    try:
        await conn.executemany(
            "INSERT INTO timers (timer_id, prospect_id, run_id, journey, journey_version, step,"
            " due_at, payload) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
            [(*row, json.dumps(payloads.get(row[0], {}))) for row in [*due, later]],
        )
        before = datetime.now(UTC)
        assert await claim_due(conn, topics, limit=3) == 3
        assert await claim_due(conn, topics) == 2
        assert await claim_due(conn, topics) == 0
        after = datetime.now(UTC)
        left = await conn.fetch("SELECT timer_id FROM timers")
        rows = await conn.fetch("SELECT topic, key, value, headers FROM outbox ORDER BY id")
    finally:
        await conn.close()

    assert [r["timer_id"] for r in left] == [later[0]]
    assert {r["topic"] for r in rows} == {topics.timers}
    fired = {}
    for row in rows:
        record = Record(bytes(row["key"]), bytes(row["value"]), json.loads(row["headers"]))
        message = decode(record.value, record.headers)
        assert isinstance(message, TimerFired)
        fired[message.timer_id] = (record, message)
    # The oldest due first: the claim of 3 took the three most overdue.
    assert set(fired) == {row[0] for row in due}
    for timer_id, prospect_id, run_id, journey, version, step, due_at in due:
        record, message = fired[timer_id]
        assert before <= message.fired_at <= after
        assert message.event_id.version == 8
        assert message.event_id != timer_id
        expected = TimerFired(
            event_id=fired_event_id(timer_id),
            prospect_id=prospect_id,
            timer_id=timer_id,
            run_id=run_id,
            journey=journey,
            journey_version=version,
            step=step,
            due_at=due_at,
            fired_at=message.fired_at,
            payload=payloads[timer_id],
        )
        assert message == expected
        reference = encode(expected)
        assert record.key == reference.key
        assert record.headers == reference.headers


@pytest.mark.parametrize(
    ("journey", "step"),
    [('we"lcome', "wait"), ("welcome", 'wa"it'), ("Welcome", "wait"), ("welcome", "wait\\")],
)
async def test_a_timer_naming_no_slug_is_refused(
    fresh_database: str, journey: str, step: str
) -> None:
    """The claim writes journey and step ids into JSON unescaped: only slugs get that far."""
    await migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO timers (timer_id, prospect_id, run_id, journey, journey_version,"
                " step, due_at) VALUES ($1, 'p', $2, $3, 1, $4, now())",
                uuid.uuid4(),
                uuid.uuid4(),
                journey,
                step,
            )
    finally:
        await conn.close()


async def test_a_prospects_timers_are_read_through_an_index(fresh_database: str) -> None:
    """The prospects API, export and erasure find a prospect's timers without a scan."""
    await migrate(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        await conn.execute("SET enable_seqscan = off")
        for query in (
            "SELECT journey, step, due_at FROM timers WHERE prospect_id = $1 ORDER BY due_at",
            "DELETE FROM timers WHERE prospect_id = ANY(ARRAY[$1])",
        ):
            plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {query}", "p-1"))
            assert "timers_prospect" in plan, plan
    finally:
        await conn.close()
