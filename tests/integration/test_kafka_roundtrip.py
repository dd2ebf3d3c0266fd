"""A wire-contract message through the real broker, with its key and headers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.partitioner import DefaultPartitioner
from faststream.kafka import KafkaMessage

from shared.contract import Channel, TouchpointEvent, TouchpointType
from shared.kafka import (
    EVENT_ID_HEADER,
    TYPE_HEADER,
    VERSION_HEADER,
    decode,
    ensure_topics,
    make_broker,
    publish,
    topic_partitions,
)
from shared.kafka.codec import Record
from shared.kafka.producer import Producer
from shared.settings import Settings

from .names import topic_name


def _event(prospect: str, n: int) -> TouchpointEvent:
    return TouchpointEvent(
        prospect_id=prospect,
        type=TouchpointType.VIDEO_PROGRESS,
        name="Video Progress",
        channel=Channel.EMAIL,
        occurred_at=datetime(2026, 5, 1, 12, 0, n, tzinfo=UTC),
        source="test",
        properties={"percent": 25 * n},
    )


async def test_message_round_trips_with_key_and_headers(settings: Settings, topic: str) -> None:
    await ensure_topics(settings, [topic], partitions=3)
    prospect = f"p-{uuid.uuid4()}"
    sent = [_event(prospect, n) for n in range(1, 5)]
    broker = make_broker(settings, client_id="test")
    async with broker:
        for message in sent:
            await publish(broker, topic, message)

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while len(records) < len(sent):
                batch = await consumer.getmany(timeout_ms=1000)
                for part in batch.values():
                    records.extend(part)
    finally:
        await consumer.stop()

    # One prospect → one partition → the order it was sent in.
    assert len({record.partition for record in records}) == 1
    received = []
    for record in records:
        headers = {name: value.decode() for name, value in record.headers}
        assert record.key == prospect.encode()
        assert headers[TYPE_HEADER] == "touchpoint"
        assert headers[VERSION_HEADER] == str(TouchpointEvent.SCHEMA_VERSION)
        received.append(decode(record.value, headers))
        assert headers[EVENT_ID_HEADER] == str(received[-1].event_id)
    assert received == sent


async def test_both_producers_wait_for_every_replica_and_never_duplicate(
    settings: Settings,
) -> None:
    """The producers the services really start: acks=all (-1) and idempotence on."""
    broker = make_broker(settings, client_id="test")
    async with broker:
        fast_producer: Any = broker.config.broker_config.producer
        faststream_producer = fast_producer._producer.producer
        assert faststream_producer._sender._acks == -1
        assert faststream_producer._txn_manager is not None  # only set when idempotent
    producer = Producer(settings, client_id="test", timeout_s=10)
    try:
        raw = await producer._ensure()
        assert raw._sender._acks == -1
        assert raw._txn_manager is not None
    finally:
        await producer.stop()


async def test_faststream_subscriber_receives_contract_message(
    settings: Settings, topic: str
) -> None:
    await ensure_topics(settings, [topic], partitions=2)
    sent = _event(f"p-{uuid.uuid4()}", 3)
    got: asyncio.Future[tuple[bytes | None, dict[str, str], TouchpointEvent]] = (
        asyncio.get_running_loop().create_future()
    )
    broker = make_broker(settings, client_id="test")

    @broker.subscriber(topic, group_id=f"g-{uuid.uuid4()}", auto_offset_reset="earliest")
    async def handle(body: TouchpointEvent, msg: KafkaMessage) -> None:
        if not got.done():
            got.set_result((msg.raw_message.key, dict(msg.headers), body))  # type: ignore[union-attr]

    async with broker:
        await broker.start()
        await publish(broker, topic, sent)
        key, headers, body = await asyncio.wait_for(got, 30)
    assert key == sent.prospect_id.encode()
    assert headers[TYPE_HEADER] == "touchpoint"
    assert body == sent


async def test_stack_topics_exist_with_configured_partitions(settings: Settings) -> None:
    from shared.topics import ALL_TOPICS

    partitions = await topic_partitions(settings, ALL_TOPICS)
    assert partitions == dict.fromkeys(ALL_TOPICS, settings.topic_partitions)


async def test_the_producer_partitions_every_record_as_the_java_client_would(
    settings: Settings,
) -> None:
    """Its kept partitions never send a key elsewhere: not on a second call, not on a topic
    with another partition count."""
    three, five = topic_name(), topic_name()
    await ensure_topics(settings, [three], partitions=3)
    await ensure_topics(settings, [five], partitions=5)
    producer = Producer(settings, client_id="test", timeout_s=20)
    await producer.start()
    try:
        for _ in range(2):
            await producer.send_records(
                [
                    (topic, Record(f"k-{n}".encode(), b"v", {}))
                    for n in range(60)
                    for topic in (three, five)
                ]
            )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        three, five, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while len(records) < 240:
                for part in (await consumer.getmany(timeout_ms=1000)).values():
                    records.extend(part)
    finally:
        await consumer.stop()
    partitioner = DefaultPartitioner()
    for record in records:
        count = 3 if record.topic == three else 5
        expected = partitioner(record.key, list(range(count)), list(range(count)))
        assert record.partition == expected, (record.topic, record.key)
    assert len({(r.topic, r.partition) for r in records}) == 8  # every partition used
