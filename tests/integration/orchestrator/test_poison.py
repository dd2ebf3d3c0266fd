"""Poison inputs go to the dead-letter topic with the reason; the partition keeps flowing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contract import Channel, DeliveryCommand, TouchpointEvent, TouchpointType
from shared.kafka import topic_partitions
from shared.kafka.codec import Record, encode
from shared.settings import Settings

from .conftest import Start

ONE_SEND = """
journey: one-send
title: One send
persona: {id: tester}
entry: {event: lead_captured}
steps:
  - id: hello
    send: {content: hello}
"""


async def _dead_letters(
    settings: Settings, topic: str, expected: int
) -> list[tuple[bytes, dict[str, str]]]:
    count = (await topic_partitions(settings, [topic]))[topic]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(count)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[tuple[bytes, dict[str, str]]] = []
        for _ in range(50):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [(r.value or b"", {k: v.decode() for k, v in r.headers}) for r in records]
            if len(found) >= expected:
                break
        return found
    finally:
        await consumer.stop()


async def _records_in(settings: Settings, topic: str) -> int:
    count = (await topic_partitions(settings, [topic]))[topic]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(count)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def test_poison_messages_are_dead_lettered_and_the_partition_flows(
    start_orchestrator: Start,
) -> None:
    o = await start_orchestrator(ONE_SEND)
    prospect = f"poisoned-{uuid.uuid4().hex[:6]}"
    good = TouchpointEvent(
        prospect_id=prospect,
        type=TouchpointType.LEAD_CAPTURED,
        name="lead_captured",
        channel=Channel.WEB,
        occurred_at=datetime.now(UTC),
        source="test",
    )
    valid = encode(good)
    poison = [
        Record(prospect.encode(), b"{not json", valid.headers),  # broken body
        Record(prospect.encode(), valid.value, {**valid.headers, "trayecto-type": "Nope"}),
        Record(prospect.encode(), b'{"kind": "touchpoint"}', valid.headers),  # wrong schema
    ]
    # Same key, so the same partition: the valid event comes after the poison.
    await o.producer.send_records([(o.topics.touchpoints, r) for r in [*poison, valid]])

    commands = await o.messages(o.topics.commands, 1, timeout_s=20)
    assert [c.content for c in commands if isinstance(c, DeliveryCommand)] == ["hello"]
    letters = await _dead_letters(o.settings, o.topics.dead_letters, 3)
    assert sorted(value for value, _ in letters) == sorted(r.value for r in poison)
    for _, headers in letters:
        assert headers["trayecto-dlq-source-topic"] == o.topics.touchpoints
        assert headers["trayecto-dlq-reason"].startswith("cannot decode")


async def test_an_input_the_engine_fails_on_is_dead_lettered_alone(
    start_orchestrator: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.orchestrator.processor as processor

    real = processor.decide  # type: ignore[attr-defined]
    cursed = f"cursed-{uuid.uuid4().hex[:6]}"

    def failing(state: Any, prospect_id: str, *args: Any) -> Any:
        if prospect_id == cursed:
            raise RuntimeError("journey bug")
        return real(state, prospect_id, *args)

    monkeypatch.setattr(processor, "decide", failing)
    o = await start_orchestrator(ONE_SEND)
    fine = f"fine-{uuid.uuid4().hex[:6]}"
    await o.send(*(_lead(p) for p in (cursed, fine)))
    commands = await o.messages(o.topics.commands, 1, timeout_s=20)
    assert [c.prospect_id for c in commands if isinstance(c, DeliveryCommand)] == [fine]
    [(value, headers)] = await _dead_letters(o.settings, o.topics.dead_letters, 1)
    assert cursed.encode() in value
    assert "journey bug" in headers["trayecto-dlq-reason"]


def _lead(prospect: str) -> TouchpointEvent:
    return TouchpointEvent(
        prospect_id=prospect,
        type=TouchpointType.LEAD_CAPTURED,
        name="lead_captured",
        channel=Channel.WEB,
        occurred_at=datetime.now(UTC),
        source="test",
    )


async def test_an_input_the_database_refuses_is_dead_lettered_and_its_partition_flows(
    start_orchestrator: Start,
) -> None:
    """A batch stuck on one input the database keeps refusing is applied input by input."""
    o = await start_orchestrator(ONE_SEND)
    stuck = f"stuck-{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(o.dsn)
    try:  # stands for any value the database cannot store (a journey bug's state)
        await conn.execute(
            f"""
            CREATE FUNCTION refuse_stuck() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.prospect_id = '{stuck}' THEN
                    RAISE EXCEPTION 'state of % too large', NEW.prospect_id
                        USING ERRCODE = 'string_data_right_truncation';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_stuck BEFORE INSERT OR UPDATE ON prospect_state
                FOR EACH ROW EXECUTE FUNCTION refuse_stuck();
            """
        )
    finally:
        await conn.close()
    before = f"before-{uuid.uuid4().hex[:6]}"
    refused = encode(_lead(stuck))
    # The same key as the stuck prospect: the same partition, after the stuck input.
    after = _lead(f"after-{uuid.uuid4().hex[:6]}")
    moved = encode(after)
    await o.producer.send_records(
        [
            (o.topics.touchpoints, encode(_lead(before))),
            (o.topics.touchpoints, refused),
            (
                o.topics.touchpoints,
                Record(stuck.encode(), moved.value, moved.headers),
            ),
        ]
    )
    commands = await o.messages(o.topics.commands, 2, timeout_s=30)
    assert sorted(c.prospect_id for c in commands if isinstance(c, DeliveryCommand)) == sorted(
        [before, after.prospect_id]
    )
    [(value, headers)] = await _dead_letters(o.settings, o.topics.dead_letters, 1)
    assert stuck.encode() in value
    assert headers["trayecto-dlq-reason"].startswith("refused by the database")
    assert f"state of {stuck} too large" in headers["trayecto-dlq-reason"]
    assert headers["trayecto-dlq-source-topic"] == o.topics.touchpoints
    processed = await o.rows(
        "SELECT count(*) AS n FROM prospect_state WHERE prospect_id = $1", stuck
    )
    assert processed[0]["n"] == 0

    # Redelivered (a crash before the offset commit), it is a duplicate: no second letter.
    marker = encode(_lead(f"marker-{uuid.uuid4().hex[:6]}"))
    await o.producer.send_records(
        [
            (o.topics.touchpoints, refused),
            (o.topics.touchpoints, Record(stuck.encode(), marker.value, marker.headers)),
        ]
    )
    assert len(await o.messages(o.topics.commands, 3, timeout_s=30)) == 3
    # The relay publishes in order: the marker's command came after any letter for it.
    assert await _records_in(o.settings, o.topics.dead_letters) == 1
